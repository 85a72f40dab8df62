using Flotilla.Cluster.Containers;
using Flotilla.Cluster.Images;
using Flotilla.Contracts.Containers;
using Flotilla.Contracts.Images;
using Marten;

namespace Flotilla.Cluster.Audit;

/// <summary>An object's state as it was at a moment: its stream up to then, folded by the entity's own pure fold.</summary>
public sealed class TimeTravel(IDocumentStore store)
{
    /// <summary>The container as of <paramref name="at"/> (now when null); <c>Exists</c> is false before its creation and after removal.</summary>
    public async Task<ContainerState> ContainerAsync(string containerId, DateTimeOffset? at, CancellationToken cancellationToken = default)
    {
        await using var session = store.QuerySession();
        var events = await session.Events.FetchStreamAsync(ContainerStreams.Key(containerId), timestamp: at, token: cancellationToken);
        return ContainerFold.Replay(containerId, events.Select(e => e.Data).OfType<IContainerEvent>());
    }

    public async Task<ImageState> ImageAsync(string imageId, DateTimeOffset? at, CancellationToken cancellationToken = default)
    {
        await using var session = store.QuerySession();
        var events = await session.Events.FetchStreamAsync(ImageStreams.Key(imageId), timestamp: at, token: cancellationToken);
        return events.Select(e => e.Data).OfType<IImageEvent>().Aggregate(ImageState.Empty(imageId), ImageFold.Apply);
    }
}
