using Flotilla.Cluster.EventStore;
using Flotilla.Contracts;
using Flotilla.Contracts.Access;

namespace Flotilla.Cluster.Audit;

/// <summary>
/// Records the client listeners' refusals in the <c>api-access</c> stream. The stream's version is kept in memory,
/// so a denial is an append, not a read of every earlier denial first; another process appending in between costs
/// one re-read.
/// </summary>
public sealed class ApiAccessLog(IEventJournal journal, string nodeName)
{
    private readonly SemaphoreSlim _gate = new(1, 1);
    private long? _version;

    public async Task RecordDenialAsync(ApiAccessDenied denial, RequestOrigin origin, CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            for (var attempt = 1; ; attempt++)
            {
                _version ??= (await journal.ReadAsync(ApiAccessStreams.Denials, cancellationToken)).Version;
                try
                {
                    _version = await journal.AppendAsync(ApiAccessStreams.Denials, _version.Value, [denial],
                        EventMetadata.From(origin, nodeName), cancellationToken);
                    return;
                }
                catch (StreamVersionConflictException) when (attempt < 5)
                {
                    _version = null;
                }
            }
        }
        finally
        {
            _gate.Release();
        }
    }
}
