using Flotilla.Cluster.EventStore;
using Flotilla.Contracts;
using Flotilla.Contracts.Nodes;

namespace Flotilla.Cluster.Containers;

/// <summary>Records the runtime actor's refusals in <c>runtime-access-&lt;node&gt;</c> (audit: who tried to give a node work).</summary>
public static class RuntimeAccess
{
    public static async Task RecordAsync(IEventJournal journal, string nodeName, RuntimeRequestRefused refusal,
        CancellationToken cancellationToken = default)
    {
        var key = RuntimeAccessStreams.Key(nodeName);
        // Unversioned appends can collide on the stream's next version; retry those.
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                var stream = await journal.ReadAsync(key, cancellationToken);
                await journal.AppendAsync(key, stream.Version, [refusal], EventMetadata.From(RequestOrigin.System(), nodeName), cancellationToken);
                return;
            }
            catch (StreamVersionConflictException) when (attempt < 5)
            {
            }
        }
    }
}
