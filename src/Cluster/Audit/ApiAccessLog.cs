using Flotilla.Cluster.EventStore;
using Flotilla.Contracts;
using Flotilla.Contracts.Access;

namespace Flotilla.Cluster.Audit;

/// <summary>
/// Records the client listeners' refusals in the <c>api-access</c> stream: appended without reading the stream
/// (<see cref="AuditStreamAppender"/>), and repeats of one listener, address and reason counted in the next event
/// (<see cref="DenialWindow"/>), so a looping page costs one event per window, not one per request.
/// </summary>
public sealed class ApiAccessLog(IEventJournal journal, string nodeName)
{
    private readonly AuditStreamAppender _stream = new(journal, ApiAccessStreams.Denials, nodeName);
    private readonly DenialWindow _window = new();

    public async Task RecordDenialAsync(ApiAccessDenied denial, RequestOrigin origin, CancellationToken cancellationToken = default)
    {
        if (!_window.ShouldRecord(denial.Listener, denial.RemoteAddress, denial.Reason, denial.Method + " " + denial.Path, out var repeats)) return;
        await _stream.AppendAsync(denial with { Repeats = repeats }, origin, cancellationToken);
    }
}
