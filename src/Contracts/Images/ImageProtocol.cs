using Flotilla.Contracts.Wire;
using MessagePack;

namespace Flotilla.Contracts.Images;

/// <summary>A message addressed to one <c>ImageEntity</c> (keyed by image id, <c>sha256:…</c>).</summary>
public interface IWithImageId : IFlotillaMessage
{
    string ImageId { get; }
}

[MessagePackObject(true)]
public sealed record GetImage(string ImageId) : IWithImageId;

[MessagePackObject(true)]
public sealed record ImageSnapshot(string ImageId, bool Exists, IReadOnlyList<string> RepoTags, long Version, string HostedOn)
    : IFlotillaMessage;

public static class ImageStreams
{
    public static string Key(string imageId) => "image-" + imageId;
}
