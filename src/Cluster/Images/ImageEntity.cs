using System.Collections.Immutable;
using Akka.Actor;
using Akka.Cluster.Sharding;
using Flotilla.Cluster.Containers;
using Flotilla.Cluster.EventStore;
using Flotilla.Contracts.Images;
using Flotilla.Contracts.Wire;

namespace Flotilla.Cluster.Images;

/// <summary>An image as its events describe it. Image events arrive with the images work.</summary>
public sealed record ImageState(string ImageId, bool Exists, ImmutableArray<string> RepoTags)
{
    public static ImageState Empty(string imageId) => new(imageId, false, []);
}

/// <summary>One image (keyed by its id, <c>sha256:…</c>): tags, layers, where it is present.</summary>
public sealed class ImageEntity : EventSourcedEntity<ImageState, IFlotillaMessage>
{
    public const string RegionName = "image";

    public ImageEntity(EntityHost host, string imageId) : base(host, ImageStreams.Key(imageId), ImageState.Empty(imageId))
    {
        Receive<GetImage>(_ => Sender.Tell(new ImageSnapshot(State.ImageId, State.Exists, State.RepoTags, Version, Host.NodeName)));
    }

    public static Props PropsFor(EntityHost host, string imageId) => Props.Create(() => new ImageEntity(host, imageId));

    protected override ImageState Apply(ImageState state, IFlotillaMessage e) => state;
}

public sealed class ImageMessageExtractor(int maxShards = ShardingDefaults.MaxShards) : HashCodeMessageExtractor(maxShards)
{
    public override string? EntityId(object message) => message switch
    {
        IWithImageId m => m.ImageId,
        _ => null,
    };
}
