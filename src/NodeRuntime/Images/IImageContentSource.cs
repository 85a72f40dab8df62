using Flotilla.NodeRuntime.Storage;

namespace Flotilla.NodeRuntime.Images;

/// <summary>
/// Where a node gets an image's blobs that are not in its own content store (another host of the cluster).
/// The node runtime asks before it mounts a container's rootfs; how peers are found is the cluster's business.
/// </summary>
public interface IImageContentSource
{
    /// <summary>
    /// Makes the config blob (when given) and every layer (DiffIDs) present in this node's content store, each
    /// verified against its digest. Throws <see cref="ImageUnavailableException"/> when they cannot be had.
    /// </summary>
    Task EnsureAsync(string imageId, string? configDigest, IReadOnlyList<Digest> layers, CancellationToken cancellationToken);
}

/// <summary>
/// An image this node does not hold and could not fetch. An <see cref="InvalidOperationException"/>, so a failed
/// container start reports it as any other runtime refusal.
/// </summary>
public sealed class ImageUnavailableException(string message) : InvalidOperationException(message);
