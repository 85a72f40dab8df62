using Flotilla.Contracts.Wire;
using MessagePack;

namespace Flotilla.Contracts.Images;

/// <summary>A message addressed to one <c>ImageEntity</c> (keyed by image id, <c>sha256:…</c>).</summary>
public interface IWithImageId : IFlotillaMessage
{
    string ImageId { get; }
}

/// <summary>A command that may change an image; carries who asked.</summary>
public interface IImageCommand : IWithImageId
{
    RequestOrigin Origin { get; }
}

/// <summary>Records that an image's content is on a node, with the references it should carry.</summary>
[MessagePackObject(true)]
public sealed record RegisterImage(string ImageId, ImageSource Source, ImageContent Content, string Node, string? Detail,
    IReadOnlyList<string> References, RequestOrigin Origin) : IImageCommand;

[MessagePackObject(true)]
public sealed record TagImage(string ImageId, string Reference, RequestOrigin Origin) : IImageCommand;

[MessagePackObject(true)]
public sealed record UntagImage(string ImageId, string Reference, string Reason, RequestOrigin Origin) : IImageCommand;

/// <summary>Deletes the image; its remaining references go with it (the caller decided it may).</summary>
[MessagePackObject(true)]
public sealed record RemoveImage(string ImageId, RequestOrigin Origin) : IImageCommand;

/// <summary>Records a pull from (or push to) a registry of an image that is on this node.</summary>
[MessagePackObject(true)]
public sealed record RecordImageDistribution(string ImageId, bool Pushed, string Reference, string ManifestDigest, string Registry,
    RequestOrigin Origin) : IImageCommand;

/// <summary>Records that the image's blobs were fetched from peers onto <paramref name="Node"/>.</summary>
[MessagePackObject(true)]
public sealed record RecordImageReplica(string ImageId, string Node, IReadOnlyList<string> From, long Bytes, RequestOrigin Origin)
    : IImageCommand;

[MessagePackObject(true)]
public sealed record GetImage(string ImageId) : IWithImageId;

[MessagePackObject(true)]
public sealed record ImageSnapshot(string ImageId, bool Exists, IReadOnlyList<string> RepoTags, IReadOnlyList<string> Nodes,
    long Version, string HostedOn) : IFlotillaMessage;

[MessagePackObject(true)]
public sealed record ImageCommandAccepted(string ImageId, IReadOnlyList<IImageEvent> Events, long Version) : IFlotillaMessage;

public static class ImageStreams
{
    public static string Key(string imageId) => "image-" + imageId;
}
