using System.Security.Cryptography;
using System.Text;
using Flotilla.Cluster.EventStore;
using JasperFx.Events;
using Marten;

namespace Flotilla.Cluster.Audit;

/// <summary>
/// A checkpoint of the global event sequence: the hash of every event hash in (<see cref="FromSequence"/>,
/// <see cref="ToSequence"/>], chained to the previous checkpoint. It catches what a stream's own chain cannot:
/// the newest event of a stream deleted, or a whole stream removed.
/// </summary>
public sealed class AuditCheckpoint
{
    /// <summary>The checkpoint's number, 1, 2, …</summary>
    public int Id { get; set; }
    public long FromSequence { get; set; }
    public long ToSequence { get; set; }
    public int Count { get; set; }
    public string Hash { get; set; } = "";
    public string PreviousHash { get; set; } = "";
    public DateTimeOffset At { get; set; }
}

/// <summary>What <c>audit verify</c> found wrong, in the words an operator needs.</summary>
public sealed record AuditProblem(string Kind, string Stream, long? Version, long? Sequence, string Detail);

public sealed record AuditVerification(long Events, int Streams, int Checkpoints, long UnchainedEvents, IReadOnlyList<AuditProblem> Problems)
{
    public bool Intact => Problems.Count == 0;
}

/// <summary>Tamper evidence over the event store: writes checkpoints, verifies chains and checkpoints.</summary>
public sealed class AuditLedger(IDocumentStore store)
{
    /// <summary>
    /// Events younger than this are left to the next checkpoint: a transaction may still commit an event with a
    /// lower sequence number than one already visible.
    /// </summary>
    public static readonly TimeSpan SettleTime = TimeSpan.FromSeconds(5);

    private const int Page = 5_000;

    /// <summary>Checkpoints every settled event not yet covered; null when there was none.</summary>
    public async Task<AuditCheckpoint?> CheckpointAsync(DateTimeOffset now, CancellationToken cancellationToken = default)
    {
        await using var session = store.LightweightSession();
        var last = await session.Query<AuditCheckpoint>().OrderByDescending(c => c.Id).FirstOrDefaultAsync(cancellationToken);
        var from = last?.ToSequence ?? 0;
        var settled = now - SettleTime;
        var events = await session.Events.QueryAllRawEvents()
            .Where(e => e.Sequence > from && e.Timestamp <= settled)
            .OrderBy(e => e.Sequence)
            .ToListAsync(cancellationToken);
        if (events.Count == 0) return null;
        var checkpoint = new AuditCheckpoint
        {
            Id = (last?.Id ?? 0) + 1,
            FromSequence = from,
            ToSequence = events[^1].Sequence,
            Count = events.Count,
            PreviousHash = last?.Hash ?? "",
            At = now,
        };
        checkpoint.Hash = RangeHash(checkpoint.PreviousHash, events.Select(e => (e.Sequence, StoredHash(e) ?? "-")));
        // Id collision (another writer checkpointed first) fails the insert: checkpoints never fork.
        session.Insert(checkpoint);
        await session.SaveChangesAsync(cancellationToken);
        return checkpoint;
    }

    public async Task<AuditVerification> VerifyAsync(CancellationToken cancellationToken = default)
    {
        var problems = new List<AuditProblem>();
        var streams = new Dictionary<string, (long Version, string Hash, bool Chained)>();
        // In sequence order (pages are read by sequence), so each checkpoint's range is one forward walk.
        var hashes = new List<(long Sequence, string Hash)>();
        long count = 0, unchained = 0;
        await using var session = store.QuerySession();

        long after = 0;
        while (true)
        {
            var page = await session.Events.QueryAllRawEvents().Where(e => e.Sequence > after).OrderBy(e => e.Sequence)
                .Take(Page).ToListAsync(cancellationToken);
            if (page.Count == 0) break;
            foreach (var e in page)
            {
                count++;
                var key = e.StreamKey ?? e.StreamId.ToString();
                var (lastVersion, lastHash, chained) = streams.GetValueOrDefault(key, (0, "", false));
                var stored = StoredHash(e);
                hashes.Add((e.Sequence, stored ?? "-"));
                if (stored is null)
                {
                    // Events from before chaining began are accepted only ahead of every chained event of their stream.
                    if (chained) problems.Add(new("inserted", key, e.Version, e.Sequence, "an event without a hash after chained events: written outside Flotilla"));
                    else unchained++;
                    streams[key] = (e.Version, "", chained);
                    continue;
                }
                if (e.Version != lastVersion + 1)
                {
                    problems.Add(new("deleted", key, lastVersion + 1, null,
                        $"versions {lastVersion + 1}..{e.Version - 1} of the stream are missing"));
                }
                else
                {
                    var expected = EventHashChain.Compute(lastHash, key, e.Version, e.Data, MetadataOf(e));
                    if (expected != stored)
                        problems.Add(new("edited", key, e.Version, e.Sequence,
                            $"{e.EventTypeName} does not match its hash: its body or metadata changed after it was written"));
                }
                // Chain on from what was stored, so one edit is reported once, not for every later event.
                streams[key] = (e.Version, stored, true);
            }
            after = page[^1].Sequence;
        }

        // The newest events of a stream leave no gap when deleted: compare with the stream's recorded version.
        foreach (var (key, seen) in streams)
        {
            var state = await session.Events.FetchStreamStateAsync(key, cancellationToken);
            if (state is not null && state.Version > seen.Version)
                problems.Add(new("deleted", key, seen.Version + 1, null,
                    $"the stream is at version {state.Version} but its events end at {seen.Version}"));
        }

        var checkpoints = await session.Query<AuditCheckpoint>().OrderBy(c => c.Id).ToListAsync(cancellationToken);
        var previous = "";
        var next = 0;
        foreach (var checkpoint in checkpoints)
        {
            while (next < hashes.Count && hashes[next].Sequence <= checkpoint.FromSequence) next++;
            var first = next;
            while (next < hashes.Count && hashes[next].Sequence <= checkpoint.ToSequence) next++;
            var range = hashes.GetRange(first, next - first);
            if (checkpoint.PreviousHash != previous)
                problems.Add(new("checkpoint", "", null, checkpoint.ToSequence, $"checkpoint {checkpoint.Id} does not chain to checkpoint {checkpoint.Id - 1}"));
            else if (range.Count != checkpoint.Count)
                problems.Add(new("checkpoint", "", null, checkpoint.ToSequence,
                    $"checkpoint {checkpoint.Id} covered {checkpoint.Count} events in sequence {checkpoint.FromSequence + 1}..{checkpoint.ToSequence}; " +
                    $"{range.Count} are there now ({(range.Count < checkpoint.Count ? "deleted" : "inserted")} rows)"));
            else if (RangeHash(previous, range) != checkpoint.Hash)
                problems.Add(new("checkpoint", "", null, checkpoint.ToSequence,
                    $"events in sequence {checkpoint.FromSequence + 1}..{checkpoint.ToSequence} differ from when checkpoint {checkpoint.Id} was taken"));
            previous = checkpoint.Hash;
        }

        return new AuditVerification(count, streams.Count, checkpoints.Count, unchained, problems);
    }

    private static string? StoredHash(IEvent e) =>
        e.Headers is { } headers && headers.TryGetValue(EventHashChain.Header, out var value) && value?.ToString() is { Length: > 0 } hash
            ? hash : null;

    private static EventMetadata MetadataOf(IEvent e) =>
        new(e.UserName ?? "", e.Headers?.GetValueOrDefault(MartenEventJournal.NodeHeader)?.ToString() ?? "", e.CorrelationId ?? "", e.CausationId);

    private static string RangeHash(string previous, IEnumerable<(long Sequence, string Hash)> events)
    {
        var builder = new StringBuilder(previous).Append('\n');
        foreach (var (sequence, hash) in events) builder.Append(sequence).Append(':').Append(hash).Append('\n');
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(builder.ToString())));
    }
}
