using Flotilla.Cluster.Containers;
using Flotilla.Cluster.Images;
using Flotilla.Cluster.Nodes;
using Marten;
using Npgsql;

namespace Flotilla.Cluster.Queries;

public sealed record ContainerCounts(int Total, int Running, int Paused, int Stopped);

/// <summary>What the scheduler needs of a container that holds a place on a node (a slice of <see cref="ContainerView"/>).</summary>
public sealed class PlacedContainer
{
    public string ContainerId { get; set; } = "";
    public string Node { get; set; } = "";
    public DesiredState Desired { get; set; }
    public string Status { get; set; } = "";
    public long Memory { get; set; }
    public long NanoCpus { get; set; }
    public string RestartPolicy { get; set; } = "no";
}

/// <summary>Read-side questions answered from the projections, never from actors.</summary>
public sealed class ClusterQueries(IDocumentStore store)
{
    public async Task<IReadOnlyList<NodeView>> NodesAsync(CancellationToken cancellationToken = default)
    {
        await using var session = store.QuerySession();
        return await session.Query<NodeView>().OrderBy(n => n.Name).ToListAsync(cancellationToken);
    }

    public async Task<NodeView?> NodeByAddressAsync(string address, CancellationToken cancellationToken = default)
    {
        await using var session = store.QuerySession();
        return await session.Query<NodeView>().FirstOrDefaultAsync(n => n.Address == address, cancellationToken);
    }

    public async Task<ContainerCounts> ContainerCountsAsync(CancellationToken cancellationToken = default)
    {
        await using var session = store.QuerySession();
        var statuses = await session.Query<ContainerView>().Select(c => c.Status).ToListAsync(cancellationToken);
        var running = statuses.Count(s => s is "running" or "restarting");
        var paused = statuses.Count(s => s == "paused");
        return new ContainerCounts(statuses.Count, running, paused, statuses.Count - running - paused);
    }

    public async Task<IReadOnlyList<ContainerView>> ContainersDesiredRunningAsync(CancellationToken cancellationToken = default)
    {
        await using var session = store.QuerySession();
        return await session.Query<ContainerView>().Where(c => c.Desired == DesiredState.Running).ToListAsync(cancellationToken);
    }

    /// <summary>
    /// Every container that holds a place on a node: created or wanted running (stopped ones reserve nothing). Only
    /// what the scheduler counts, as plain columns: it reads this every few hundred milliseconds while placements
    /// come, and whole views (labels, mounts, command) deserialized from JSON cost several times as much.
    /// </summary>
    public async Task<IReadOnlyList<PlacedContainer>> ContainersPlacedAsync(CancellationToken cancellationToken = default)
    {
        var table = store.Options.FindOrResolveDocumentType(typeof(ContainerView)).TableName.QualifiedName;
        await using var connection = store.Storage.Database.CreateConnection();
        await connection.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand(
            $"""
             SELECT data ->> 'ContainerId', data ->> 'Node', data ->> 'Desired', data ->> 'Status',
                    (data ->> 'Memory')::bigint, (data ->> 'NanoCpus')::bigint, data ->> 'RestartPolicy'
             FROM {table} WHERE data ->> 'Desired' IN ('{DesiredState.Created}', '{DesiredState.Running}')
             """, connection);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var placed = new List<PlacedContainer>();
        while (await reader.ReadAsync(cancellationToken))
            placed.Add(new PlacedContainer
            {
                ContainerId = reader.GetString(0),
                Node = reader.GetString(1),
                Desired = Enum.Parse<DesiredState>(reader.GetString(2)),
                Status = reader.GetString(3),
                Memory = reader.GetInt64(4),
                NanoCpus = reader.GetInt64(5),
                RestartPolicy = reader.GetString(6),
            });
        return placed;
    }

    /// <summary>One image by its id (<c>sha256:…</c>), or null.</summary>
    public async Task<ImageView?> ImageAsync(string imageId, CancellationToken cancellationToken = default)
    {
        await using var session = store.QuerySession();
        return await session.LoadAsync<ImageView>(Contracts.Images.ImageStreams.Key(imageId), cancellationToken);
    }

    public async Task<int> ImageCountAsync(CancellationToken cancellationToken = default)
    {
        await using var session = store.QuerySession();
        return await session.Query<ImageView>().CountAsync(cancellationToken);
    }
}
