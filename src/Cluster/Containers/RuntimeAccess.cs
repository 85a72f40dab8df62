using Flotilla.Cluster.Audit;
using Flotilla.Cluster.EventStore;
using Flotilla.Contracts;
using Flotilla.Contracts.Nodes;

namespace Flotilla.Cluster.Containers;

/// <summary>
/// Records the runtime actor's refusals in <c>runtime-access-&lt;node&gt;</c> (audit: who tried to give a node work):
/// appended without reading the stream, and a flood's repeats counted (<see cref="DenialWindow"/>), not each written.
/// </summary>
public sealed class RuntimeAccessLog(IEventJournal journal, string nodeName)
{
    private readonly AuditStreamAppender _stream = new(journal, RuntimeAccessStreams.Key(nodeName), nodeName);
    private readonly DenialWindow _window = new();

    public async Task RecordAsync(RuntimeRequestRefused refusal, CancellationToken cancellationToken = default)
    {
        if (!_window.ShouldRecord("runtime", SenderAddress(refusal.Sender), refusal.Reason, refusal.Request + " " + refusal.ContainerId, out var repeats)) return;
        await _stream.AppendAsync(refusal with { Repeats = repeats }, RequestOrigin.System(), cancellationToken);
    }

    /// <summary><c>akka.tcp://sys@host:port/user/x</c> → <c>akka.tcp://sys@host:port</c>: one sender, whatever actor it names.</summary>
    internal static string SenderAddress(string sender)
    {
        var scheme = sender.IndexOf("://", StringComparison.Ordinal);
        var path = scheme < 0 ? -1 : sender.IndexOf('/', scheme + 3);
        return path < 0 ? sender : sender[..path];
    }
}
