using Flotilla.Cluster.Containers;
using Flotilla.Cluster.Images;
using Flotilla.Cluster.Nodes;
using Marten;

namespace Flotilla.Cluster.Queries;

public sealed record ContainerCounts(int Total, int Running, int Paused, int Stopped);

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

    /// <summary>Every container that holds a place on a node: created or wanted running (stopped ones reserve nothing).</summary>
    public async Task<IReadOnlyList<ContainerView>> ContainersPlacedAsync(CancellationToken cancellationToken = default)
    {
        await using var session = store.QuerySession();
        return await session.Query<ContainerView>()
            .Where(c => c.Desired == DesiredState.Created || c.Desired == DesiredState.Running).ToListAsync(cancellationToken);
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
