using System.Diagnostics;
using Flotilla.Cluster.EventStore;
using Marten;

namespace Flotilla.Cluster.Audit;

public sealed record ProjectionRebuilt(string Projection, double Seconds);

/// <summary><c>flotilla replay</c>: every read model thrown away and folded again from the events.</summary>
public sealed class ProjectionReplay(IDocumentStore store)
{
    public async Task<IReadOnlyList<ProjectionRebuilt>> RebuildAllAsync(CancellationToken cancellationToken = default)
    {
        using var daemon = await store.BuildProjectionDaemonAsync();
        var rebuilt = new List<ProjectionRebuilt>();
        foreach (var projection in FlotillaStore.Projections)
        {
            var watch = Stopwatch.StartNew();
            await daemon.RebuildProjectionAsync(projection, TimeSpan.FromMinutes(10), cancellationToken);
            rebuilt.Add(new ProjectionRebuilt(projection.Name, watch.Elapsed.TotalSeconds));
        }
        return rebuilt;
    }
}
