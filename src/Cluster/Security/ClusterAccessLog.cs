using System.Threading.Channels;
using Flotilla.Cluster.Audit;
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
/// <see cref="Refused"/> never blocks (it is called from TLS handshakes); one writer appends in the background without
/// reading the stream (<see cref="AuditStreamAppender"/>). The same surface, address and reason within
/// <see cref="Window"/> is counted, not written again (<see cref="DenialWindow"/>). Enrollments that succeeded are
/// recorded there too (<see cref="EnrolledAsync"/>).
/// </summary>
public sealed class ClusterAccessLog(IEventJournal journal, FlotillaClusterOptions options, ILogger<ClusterAccessLog> logger)
    : BackgroundService
{
    public static readonly TimeSpan Window = DenialWindow.DefaultWindow;

    private readonly Channel<ClusterAccessDenied> _pending = Channel.CreateBounded<ClusterAccessDenied>(
        new BoundedChannelOptions(1024) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });
    private readonly DenialWindow _window = new(Window);
    private readonly AuditStreamAppender _stream = new(journal, ClusterAccessStreams.Key(options.NodeName), options.NodeName);

    public void Refused(string surface, string? remoteAddress, string? subject, string reason)
    {
        logger.LogWarning("Refused {Surface} access from {Remote}: {Reason}", surface, remoteAddress ?? "unknown", reason);
        if (_window.ShouldRecord(surface, remoteAddress, reason, null, out var repeats))
            _pending.Writer.TryWrite(new ClusterAccessDenied(surface, remoteAddress, subject, reason, repeats, DateTimeOffset.UtcNow));
    }

    /// <summary>
    /// Records a certificate the enrollment listener signed, before the joiner gets it (awaited, not windowed: every
    /// enrollment is an event, and one that cannot be recorded is not answered).
    /// </summary>
    public async Task EnrolledAsync(ClusterMemberEnrolled enrolled, CancellationToken cancellationToken)
    {
        logger.LogInformation("Enrolled {Role} {Name} from {Remote}: certificate serial {Serial}", enrolled.Role, enrolled.Name,
            enrolled.RemoteAddress ?? "unknown", enrolled.Serial);
        var origin = new RequestOrigin(enrolled.RemoteAddress is { } a ? "peer@" + a : "peer", Guid.NewGuid().ToString("N"));
        await _stream.AppendAsync(enrolled, origin, cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await foreach (var denial in _pending.Reader.ReadAllAsync(stoppingToken))
        {
            var origin = new RequestOrigin(denial.RemoteAddress is { } a ? "peer@" + a : "peer", Guid.NewGuid().ToString("N"));
            for (var attempt = 1; attempt <= 3; attempt++)
            {
                try
                {
                    await _stream.AppendAsync(denial, origin, stoppingToken);
                    break;
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    logger.LogWarning("Could not record a refusal in {Stream}: {Error}", _stream.StreamKey, ex.Message);
                    await Task.Delay(TimeSpan.FromMilliseconds(200 * attempt), stoppingToken);
                }
            }
        }
    }
}
