using System.Collections.Concurrent;
using Flotilla.Cluster.EventStore;
using Flotilla.Contracts;

namespace Flotilla.Cluster.Audit;

/// <summary>
/// Appends to an audit-only stream (denials: nothing folds it, nobody reads it to decide) without reading the stream:
/// the version after this process's last append is kept, and only the version (one row, not the events) is looked up
/// when it is unknown — at start, or after another process appended in between. The cost of an append therefore does
/// not grow with the stream. Appends of one process are serialised, which keeps them from colliding with each other.
/// </summary>
public sealed class AuditStreamAppender(IEventJournal journal, string streamKey, string nodeName)
{
    private readonly SemaphoreSlim _gate = new(1, 1);
    // The stream's version after this process's last append; -1 = unknown.
    private long _version = -1;

    public string StreamKey => streamKey;

    public async Task AppendAsync(object e, RequestOrigin origin, CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            for (var attempt = 1; ; attempt++)
            {
                try
                {
                    if (_version < 0) _version = await journal.VersionAsync(streamKey, cancellationToken);
                    _version = await journal.AppendAsync(streamKey, _version, [e], EventMetadata.From(origin, nodeName), cancellationToken);
                    return;
                }
                catch (StreamVersionConflictException) when (attempt < 5)
                {
                    _version = -1;
                }
                catch
                {
                    // Cancelled mid-commit, say: the append may or may not be in, so the version is unknown.
                    _version = -1;
                    throw;
                }
            }
        }
        finally
        {
            _gate.Release();
        }
    }
}

/// <summary>
/// Bounds what a flood of refusals writes. A kind is (surface, remote address, reason, target — the path, resource or
/// container asked for). The first refusal of a kind is recorded at once; repeats within <see cref="Window"/> are only
/// counted, and the first one after the window is recorded carrying that count (<c>Repeats</c>). An address may open
/// at most <see cref="NewKindsPerWindow"/> kinds per window on one surface; beyond that its refusals fold into one
/// kind per reason (target dropped). So one address costs a bounded number of events per window, however fast it asks
/// and whatever targets it varies. Counts pending when a flood stops are written with the next refusal of that kind.
/// </summary>
public sealed class DenialWindow(TimeSpan? window = null)
{
    public static readonly TimeSpan DefaultWindow = TimeSpan.FromSeconds(10);
    public const int NewKindsPerWindow = 100;
    private const int MaxKinds = 10_000;

    private readonly ConcurrentDictionary<(string Surface, string? Address, string Reason, string? Target), (DateTimeOffset Since, int Repeats)> _recent = new();
    private readonly ConcurrentDictionary<(string Surface, string? Address), (DateTimeOffset Since, int Kinds)> _newKinds = new();

    public TimeSpan Window { get; } = window ?? DefaultWindow;

    /// <summary>True when this refusal is to be recorded; <paramref name="repeats"/> is how many were counted, not written, before it.</summary>
    public bool ShouldRecord(string surface, string? remoteAddress, string reason, string? target, out int repeats)
    {
        var now = DateTimeOffset.UtcNow;
        var key = (surface, remoteAddress, reason, target);
        if (target is not null && !_recent.TryGetValue(key, out _) && !TakeNewKind(surface, remoteAddress, now))
            key = (surface, remoteAddress, reason, null);
        var counted = 0;
        var record = true;
        _recent.AddOrUpdate(key, _ => (now, 0), (_, seen) =>
        {
            if (now - seen.Since < Window)
            {
                record = false;
                return (seen.Since, seen.Repeats + 1);
            }
            record = true;
            counted = seen.Repeats;
            return (now, 0);
        });
        // Many addresses (a spoofed or wide source): forget the stale kinds; a forgotten kind is recorded afresh.
        if (_recent.Count > MaxKinds)
        {
            foreach (var (stale, seen) in _recent)
                if (now - seen.Since >= Window) _recent.TryRemove(stale, out _);
            foreach (var (stale, seen) in _newKinds)
                if (now - seen.Since >= Window) _newKinds.TryRemove(stale, out _);
        }
        if (_recent.Count > MaxKinds) _recent.Clear();
        if (_newKinds.Count > MaxKinds) _newKinds.Clear();
        repeats = record ? counted : 0;
        return record;
    }

    /// <summary>Counts a new kind against the address's budget for this window; false when the budget is spent.</summary>
    private bool TakeNewKind(string surface, string? remoteAddress, DateTimeOffset now)
    {
        var within = true;
        _newKinds.AddOrUpdate((surface, remoteAddress), _ => (now, 1), (_, seen) =>
        {
            if (now - seen.Since >= Window)
            {
                within = true;
                return (now, 1);
            }
            within = seen.Kinds < NewKindsPerWindow;
            return (seen.Since, seen.Kinds + (within ? 1 : 0));
        });
        return within;
    }
}
