using Flotilla.Cluster.EventStore;
using Flotilla.Contracts;
using Flotilla.Contracts.Containers;
using Flotilla.Contracts.Volumes;
using Marten;

namespace Flotilla.Cluster.Volumes;

/// <summary>
/// The cluster's record of its local volumes: one stream per name (<c>volume-&lt;name&gt;</c>) saying which node holds
/// it. The data itself is only ever on that node (<c>NodeRuntime/Volumes/VolumeStore</c>); this is what every
/// gateway reads to list, inspect and place by.
/// </summary>
public sealed class VolumeRegistry(IDocumentStore store, IEventJournal journal, string processNode)
{
    /// <summary>Set to <c>true</c> on a container: it may be moved off a dead node although its volumes stay there.</summary>
    public const string MoveWithoutVolumesLabel = "flotilla.volume.move";

    /// <summary>
    /// The local volumes that keep a container on their node (their data is there), or none when it has none or is
    /// labelled <see cref="MoveWithoutVolumesLabel"/><c>=true</c>.
    /// </summary>
    public static IReadOnlyList<string> PinningVolumes(ContainerDefinition definition) =>
        definition.Labels.TryGetValue(MoveWithoutVolumesLabel, out var move) && move.Trim().Equals("true", StringComparison.OrdinalIgnoreCase)
            ? []
            : definition.Mounts.Where(m => m is { Type: "volume", VolumeName: not null }).Select(m => m.VolumeName!).Distinct().ToList();

    /// <summary>Why a container stays on <paramref name="node"/>: said by the scheduler, the entity and <c>docker inspect</c> alike.</summary>
    public static string PinnedReason(IEnumerable<string> volumes, string node) =>
        $"it uses the local volume(s) {string.Join(", ", volumes)}, which live on node {node}: it is not moved " +
        $"to another node with empty volumes (label {MoveWithoutVolumesLabel}=true allows that)";

    public static string Key(string name) => "volume-" + name;

    public async Task<VolumeView?> GetAsync(string name, CancellationToken cancellationToken = default)
    {
        await using var session = store.QuerySession();
        return await session.LoadAsync<VolumeView>(Key(name), cancellationToken);
    }

    public async Task<IReadOnlyList<VolumeView>> ListAsync(CancellationToken cancellationToken = default)
    {
        await using var session = store.QuerySession();
        return await session.Query<VolumeView>().OrderBy(v => v.Name).ToListAsync(cancellationToken);
    }

    /// <summary>
    /// Records the volume on <paramref name="created"/>'s node unless it exists already; returns the record that holds
    /// (another request's, when it won a race for the name: its node is the volume's home, not this one).
    /// </summary>
    public async Task<VolumeView> CreateAsync(VolumeCreated created, RequestOrigin origin, CancellationToken cancellationToken = default)
    {
        var key = Key(created.Name);
        for (var attempt = 0; ; attempt++)
        {
            if (await GetAsync(created.Name, cancellationToken) is { } existing) return existing;
            var version = await journal.VersionAsync(key, cancellationToken);
            try
            {
                await journal.AppendAsync(key, version, [created], EventMetadata.From(origin, processNode), cancellationToken);
                return (await GetAsync(created.Name, cancellationToken))!;
            }
            catch (StreamVersionConflictException) when (attempt < 3)
            {
                // Another request wrote the name first: read what it recorded.
            }
        }
    }

    /// <summary>Records the removal; false when there was no such volume (or another request removed it first).</summary>
    public async Task<bool> RemoveAsync(string name, RequestOrigin origin, CancellationToken cancellationToken = default)
    {
        var existing = await GetAsync(name, cancellationToken);
        if (existing is null) return false;
        var key = Key(name);
        var version = await journal.VersionAsync(key, cancellationToken);
        try
        {
            await journal.AppendAsync(key, version, [new VolumeRemoved(name, existing.Node, DateTimeOffset.UtcNow)],
                EventMetadata.From(origin, processNode), cancellationToken);
            return true;
        }
        catch (StreamVersionConflictException)
        {
            return false;
        }
    }
}
