using System.Collections.Concurrent;
using System.Threading.Channels;
using Flotilla.Cluster.EventStore;
using Flotilla.Cluster.Hosting;
using Flotilla.Contracts;
using Flotilla.Contracts.Security;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Flotilla.Cluster.Security;

/// <summary>
/// Records refusals on the cluster's surfaces (<see cref="ClusterSurfaces"/>) as <see cref="ClusterAccessDenied"/>
/// events in this process's own <c>cluster-access-&lt;name&gt;</c> stream, and logs each one with the peer's address.
/// <see cref="Refused"/> never blocks (it is called from TLS handshakes); one writer appends in the background,
/// and only this process writes its stream, so the version is read once and kept. The same surface, address and
/// reason within <see cref="Window"/> is counted, not written again.
/// </summary>
public sealed class ClusterAccessLog(IEventJournal journal, FlotillaClusterOptions options, ILogger<ClusterAccessLog> logger)
    : BackgroundService
{
    public static readonly TimeSpan Window = TimeSpan.FromSeconds(10);

    private readonly Channel<ClusterAccessDenied> _pending = Channel.CreateBounded<ClusterAccessDenied>(
        new BoundedChannelOptions(1024) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });
    private readonly ConcurrentDictionary<(string Surface, string? Address, string Reason), (DateTimeOffset Since, int Repeats)> _recent = new();
    private long _version = -1;

    public void Refused(string surface, string? remoteAddress, string? subject, string reason)
    {
        logger.LogWarning("Refused {Surface} access from {Remote}: {Reason}", surface, remoteAddress ?? "unknown", reason);
        var now = DateTimeOffset.UtcNow;
        var key = (surface, remoteAddress, reason);
        var repeats = 0;
        var record = true;
        _recent.AddOrUpdate(key, _ => (now, 0), (_, seen) =>
        {
            if (now - seen.Since < Window)
            {
                record = false;
                return (seen.Since, seen.Repeats + 1);
            }
            repeats = seen.Repeats;
            return (now, 0);
        });
        if (record) _pending.Writer.TryWrite(new ClusterAccessDenied(surface, remoteAddress, subject, reason, repeats, now));
        if (_recent.Count > 10_000) _recent.Clear();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var stream = ClusterAccessStreams.Key(options.NodeName);
        await foreach (var denial in _pending.Reader.ReadAllAsync(stoppingToken))
        {
            var origin = new RequestOrigin(denial.RemoteAddress is { } a ? "peer@" + a : "peer", Guid.NewGuid().ToString("N"));
            for (var attempt = 1; attempt <= 3; attempt++)
            {
                try
                {
                    if (_version < 0) _version = (await journal.ReadAsync(stream, stoppingToken)).Version;
                    _version = await journal.AppendAsync(stream, _version, [denial], EventMetadata.From(origin, options.NodeName), stoppingToken);
                    break;
                }
                catch (StreamVersionConflictException)
                {
                    _version = -1;
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    logger.LogWarning("Could not record a refusal in {Stream}: {Error}", stream, ex.Message);
                    _version = -1;
                    await Task.Delay(TimeSpan.FromMilliseconds(200 * attempt), stoppingToken);
                }
            }
        }
    }
}
