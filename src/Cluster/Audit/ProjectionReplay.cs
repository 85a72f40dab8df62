using System.Diagnostics;
using Flotilla.Cluster.Containers;
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
            if (projection == typeof(ContainerViewProjection))
                await RebuildWithoutUniqueNamesAsync(() => daemon.RebuildProjectionAsync(projection, TimeSpan.FromMinutes(10), cancellationToken), cancellationToken);
            else
                await daemon.RebuildProjectionAsync(projection, TimeSpan.FromMinutes(10), cancellationToken);
            rebuilt.Add(new ProjectionRebuilt(projection.Name, watch.Elapsed.TotalSeconds));
        }
        return rebuilt;
    }

    /// <summary>
    /// The daemon writes a batch of events' outcome per stream in no particular order, so a name that passed from one
    /// container to another inside a batch can be upserted before the old holder's row is deleted or renamed: the unique
    /// name index would refuse a history that never held a name twice. The index is left out while the rows are
    /// rebuilt and made again after; a store whose containers really share a name (written before the index existed)
    /// is named in the error.
    /// </summary>
    private async Task RebuildWithoutUniqueNamesAsync(Func<Task> rebuild, CancellationToken cancellationToken)
    {
        var schema = store.Options.DatabaseSchemaName;
        await using (var session = store.LightweightSession())
        {
            session.QueueSqlCommand($"DROP INDEX IF EXISTS {schema}.{FlotillaStore.ContainerNameIndex}");
            await session.SaveChangesAsync(cancellationToken);
        }
        try
        {
            await rebuild();
        }
        finally
        {
            try
            {
                await store.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
            }
            catch (Exception ex)
            {
                await using var query = store.QuerySession();
                var shared = await query.AdvancedSql.QueryAsync<string>(
                    $"select data ->> 'Name' from {schema}.mt_doc_containerview group by 1 having count(*) > 1 limit 20", cancellationToken);
                throw new InvalidOperationException(shared.Count == 0
                    ? $"the container name index could not be made again: {ex.Message}"
                    : $"containers share a name, so the unique name index could not be made again: {string.Join(", ", shared)}", ex);
            }
        }
    }
}
