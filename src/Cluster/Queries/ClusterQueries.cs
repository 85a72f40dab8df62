using Flotilla.Cluster.Containers;
using Flotilla.Cluster.Images;
using Flotilla.Cluster.Nodes;
using Flotilla.Contracts.Containers;
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
    public ContainerStatus Status { get; set; }
    public long Memory { get; set; }
    public long NanoCpus { get; set; }
    public RestartPolicyName RestartPolicy { get; set; }
    /// <summary>The local volumes it uses: they live on <see cref="Node"/>, so failover does not move it elsewhere.</summary>
    public IReadOnlyList<string> Volumes { get; set; } = [];
    /// <summary>Labelled <see cref="Volumes.VolumeRegistry.MoveWithoutVolumesLabel"/><c>=true</c>: it may move without its volumes.</summary>
    public bool MovesWithoutVolumes { get; set; }
}

/// <summary>
/// The containers that hold a place on a node, by id, as of a snapshot whose horizon (the oldest transaction id it
/// did not see) lets the next read fetch only what changed. Immutable once built.
/// </summary>
/// <param name="Incremental">Whether it was updated from a previous read rather than read whole.</param>
public sealed record PlacedContainers(IReadOnlyDictionary<string, PlacedContainer> ById, long Horizon, bool Incremental);

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
        var running = statuses.Count(s => s is ContainerStatus.Running or ContainerStatus.Restarting);
        var paused = statuses.Count(s => s == ContainerStatus.Paused);
        return new ContainerCounts(statuses.Count, running, paused, statuses.Count - running - paused);
    }

    public async Task<IReadOnlyList<ContainerView>> ContainersDesiredRunningAsync(CancellationToken cancellationToken = default)
    {
        await using var session = store.QuerySession();
        return await session.Query<ContainerView>().Where(c => c.Desired == DesiredState.Running).ToListAsync(cancellationToken);
    }

    /// <summary>
    /// Every container that holds a place on a node: created or wanted running (stopped ones reserve nothing). Only
    /// what the scheduler counts, as plain columns: whole views (labels, mounts, command) deserialized from JSON cost
    /// several times as much.
    /// </summary>
    public async Task<IReadOnlyList<PlacedContainer>> ContainersPlacedAsync(CancellationToken cancellationToken = default) =>
        [.. (await ContainersPlacedAsync(null, cancellationToken)).ById.Values];

    /// <summary>
    /// The containers that hold a place, brought up to date from <paramref name="previous"/>: only the rows written
    /// since its snapshot are read (the scheduler reads this every few hundred milliseconds while placements come,
    /// and a full read grows with every container). Without a previous read, or when the count of placed containers
    /// says the update missed something (a removed container's view is deleted, which no row shows), it reads all.
    /// </summary>
    public async Task<PlacedContainers> ContainersPlacedAsync(PlacedContainers? previous, CancellationToken cancellationToken = default)
    {
        var table = store.Options.FindOrResolveDocumentType(typeof(ContainerView)).TableName.QualifiedName;
        const string columns = """
            data ->> 'ContainerId', data ->> 'Node', data ->> 'Desired', data ->> 'Status',
            (data ->> 'Memory')::bigint, (data ->> 'NanoCpus')::bigint, data ->> 'RestartPolicy',
            (SELECT string_agg(m ->> 'VolumeName', ',') FROM jsonb_array_elements(CASE WHEN jsonb_typeof(data -> 'Mounts') = 'array' THEN data -> 'Mounts' ELSE '[]'::jsonb END) m
             WHERE m ->> 'Type' = 'volume' AND m ->> 'VolumeName' IS NOT NULL),
            data -> 'Labels' ->> 'flotilla.volume.move'
            """;
        var isPlaced = $"data ->> 'Desired' IN ('{DesiredState.Created}', '{DesiredState.Running}')";
        await using var connection = store.Storage.Database.CreateConnection();
        await connection.OpenAsync(cancellationToken);
        // One snapshot for the count, the rows and the snapshot's horizon.
        await using var transaction = await connection.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, cancellationToken);

        // Every transaction that commits after this snapshot has an id at or above its xmin (the oldest one still
        // running), so the next update reads the rows whose xmin is at or above it: nothing written since is missed.
        long horizon, placedCount;
        await using (var head = new NpgsqlCommand(
            $"SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint, (SELECT count(*) FROM {table} WHERE {isPlaced})", connection, transaction))
        await using (var reader = await head.ExecuteReaderAsync(cancellationToken))
        {
            await reader.ReadAsync(cancellationToken);
            horizon = reader.GetInt64(0);
            placedCount = reader.GetInt64(1);
        }

        // Row xmin is the low 32 bits of the 64-bit id: an update compares within one epoch, else it reads all.
        var incremental = previous is not null && previous.Horizon >> 32 == horizon >> 32;
        var byId = incremental ? new Dictionary<string, PlacedContainer>(previous!.ById) : new Dictionary<string, PlacedContainer>();
        if (incremental)
        {
            await ReadPlacedAsync($"SELECT {columns} FROM {table} WHERE xmin::text::bigint >= {previous!.Horizon & uint.MaxValue}", byId);
            if (byId.Count != placedCount)
            {
                byId.Clear();
                incremental = false;
            }
        }
        if (!incremental) await ReadPlacedAsync($"SELECT {columns} FROM {table} WHERE {isPlaced}", byId);
        await transaction.CommitAsync(cancellationToken);
        return new PlacedContainers(byId, horizon, incremental);

        async Task ReadPlacedAsync(string sql, Dictionary<string, PlacedContainer> into)
        {
            await using var command = new NpgsqlCommand(sql, connection, transaction);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                var container = new PlacedContainer
                {
                    ContainerId = reader.GetString(0),
                    Node = reader.GetString(1),
                    Desired = Enum.Parse<DesiredState>(reader.GetString(2)),
                    Status = StoredWords<ContainerStatus>.Parse(reader.GetString(3)),
                    Memory = reader.GetInt64(4),
                    NanoCpus = reader.GetInt64(5),
                    RestartPolicy = StoredWords<RestartPolicyName>.Parse(reader.GetString(6)),
                    Volumes = reader.IsDBNull(7) ? [] : reader.GetString(7).Split(','),
                    MovesWithoutVolumes = !reader.IsDBNull(8) && reader.GetString(8).Trim().Equals("true", StringComparison.OrdinalIgnoreCase),
                };
                if (container.Desired is DesiredState.Created or DesiredState.Running) into[container.ContainerId] = container;
                else into.Remove(container.ContainerId);
            }
        }
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
