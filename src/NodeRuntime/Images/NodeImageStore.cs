using System.Text;
using Flotilla.Contracts.Images;
using Flotilla.NodeRuntime.Storage;

namespace Flotilla.NodeRuntime.Images;

/// <summary>
/// A node's image data: the content store under <c>&lt;data&gt;/content</c>, and the archive and
/// import paths into and out of it. Metadata (tags, history) lives in the image entities; this holds bytes.
/// </summary>
public sealed class NodeImageStore
{
    public NodeImageStore(string dataRoot)
    {
        Content = new ContentStore(Path.Combine(dataRoot, "content"));
        Snapshots = new OverlaySnapshotter(dataRoot);
    }

    public ContentStore Content { get; }
    public OverlaySnapshotter Snapshots { get; }

    /// <summary>
    /// Unpacks the image's layers into snapshots (bottom first), skipping those already there. This is
    /// also where an unsafe layer is refused — before anything records the image.
    /// </summary>
    public async Task<IReadOnlyList<Digest>> UnpackAsync(IReadOnlyList<Descriptor> layers, CancellationToken cancellationToken = default)
    {
        var chain = OverlaySnapshotter.ChainIds(layers.Select(l => l.Digest).ToList());
        Digest? parent = null;
        for (var i = 0; i < layers.Count; i++)
        {
            if (!Snapshots.Exists(chain[i]))
            {
                await using var blob = Content.OpenRead(layers[i].Digest);
                await Snapshots.ApplyLayerAsync(parent, blob, layers[i].Digest, cancellationToken: cancellationToken);
            }
            parent = chain[i];
        }
        return chain;
    }

    public Task<LoadedImage> ImportAsync(Stream rootfs, ImportOptions options, CancellationToken cancellationToken = default) =>
        ImportedRootfs.ImportAsync(Content, rootfs, options, cancellationToken);

    public Task<IReadOnlyList<LoadedImage>> LoadAsync(Stream archive, CancellationToken cancellationToken = default) =>
        new ImageArchiveReader(Content).LoadAsync(archive, cancellationToken);

    public Task SaveAsync(Stream output, IReadOnlyList<ImageToSave> images, CancellationToken cancellationToken = default) =>
        new ImageArchiveWriter(Content).WriteAsync(output, images, cancellationToken);

    /// <summary>Whether every blob of the image (config and layers) is in this node's store.</summary>
    public bool Has(Digest configDigest, IEnumerable<Digest> layers) => Content.Exists(configDigest) && layers.All(Content.Exists);

    /// <summary>What the image entity records about an image that arrived here.</summary>
    public async Task<ImageContent> DescribeAsync(LoadedImage image, CancellationToken cancellationToken = default)
    {
        var configJson = Encoding.UTF8.GetString(await Content.ReadAllAsync(image.ConfigDigest, cancellationToken));
        var config = image.Config;
        var comment = config.Comment ?? config.History?.LastOrDefault(h => h.Comment is not null)?.Comment;
        return new ImageContent(
            image.ConfigDigest.ToString(),
            image.ManifestDigest.ToString(),
            image.Layers.Select(l => new LayerRef(l.Digest.ToString(), l.Size)).ToList(),
            image.Layers.Sum(l => l.Size),
            config.Created ?? DateTimeOffset.UnixEpoch,
            config.Architecture,
            config.Os,
            configJson,
            config.Author,
            comment,
            null);
    }
}
