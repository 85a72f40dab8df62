using Flotilla.Contracts.Wire;
using MessagePack;

namespace Flotilla.Contracts.Images;

/// <summary>One layer of an image: its DiffID (digest of the uncompressed tar) and size.</summary>
[MessagePackObject(true)]
public sealed record LayerRef(string DiffId, long Size);

/// <summary>
/// What an image is, independent of how it arrived: its config (raw JSON, whose digest is the
/// image id), manifest digest, layers bottom to top, and the figures listings show.
/// </summary>
[MessagePackObject(true)]
public sealed record ImageContent(
    string ConfigDigest,
    string? ManifestDigest,
    IReadOnlyList<LayerRef> Layers,
    long Size,
    DateTimeOffset Created,
    string Architecture,
    string Os,
    string ConfigJson,
    string? Author,
    string? Comment,
    string? Parent);

/// <summary>How an image came to be on a node.</summary>
public enum ImageSource { Imported, Loaded, Committed, Pulled, Built }

/// <summary>An event in an image's stream (<c>image-&lt;id&gt;</c>).</summary>
[Union(0, typeof(ImageRegistered))]
[Union(1, typeof(ImageTagged))]
[Union(2, typeof(ImageUntagged))]
[Union(3, typeof(ImageRemoved))]
[Union(4, typeof(ImagePulled))]
[Union(5, typeof(ImagePushed))]
[Union(6, typeof(ImageReplicated))]
public interface IImageEvent : IFlotillaMessage
{
    string ImageId { get; }
}

/// <summary>
/// An image's content arrived on a node (import, load, commit, pull, build). Repeated when the same
/// image arrives again or on another node: each arrival is part of its history.
/// </summary>
[MessagePackObject(true)]
public sealed record ImageRegistered(string ImageId, ImageSource Source, ImageContent Content, string Node, string? Detail,
    DateTimeOffset At) : IImageEvent;

/// <summary>A repository reference (<c>docker.io/library/busybox:latest</c>) now names this image.</summary>
[MessagePackObject(true)]
public sealed record ImageTagged(string ImageId, string Reference, DateTimeOffset At) : IImageEvent;

/// <summary>A reference no longer names this image (removed, or moved to another image).</summary>
[MessagePackObject(true)]
public sealed record ImageUntagged(string ImageId, string Reference, string Reason, DateTimeOffset At) : IImageEvent;

/// <summary>The image was deleted.</summary>
[MessagePackObject(true)]
public sealed record ImageRemoved(string ImageId, DateTimeOffset At) : IImageEvent;

/// <summary>
/// The image was pulled from a registry as <paramref name="Reference"/> (normalised, with tag or digest);
/// <paramref name="ManifestDigest"/> is the registry's manifest digest. Recorded on every pull, also when
/// the image was already here.
/// </summary>
[MessagePackObject(true)]
public sealed record ImagePulled(string ImageId, string Reference, string ManifestDigest, string Registry, DateTimeOffset At) : IImageEvent;

/// <summary>The image was pushed to a registry as <paramref name="Reference"/>; the registry now names it by <paramref name="ManifestDigest"/>.</summary>
[MessagePackObject(true)]
public sealed record ImagePushed(string ImageId, string Reference, string ManifestDigest, string Registry, DateTimeOffset At) : IImageEvent;

/// <summary>
/// The image's content was copied onto <paramref name="Node"/> from peers (<paramref name="From"/>, node names), by
/// digest and verified, because a container there needed it; <paramref name="Bytes"/> is what crossed the network.
/// </summary>
[MessagePackObject(true)]
public sealed record ImageReplicated(string ImageId, string Node, IReadOnlyList<string> From, long Bytes, DateTimeOffset At) : IImageEvent;
