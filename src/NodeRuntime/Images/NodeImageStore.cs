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
        DataRoot = Path.GetFullPath(dataRoot);
        Content = new ContentStore(Path.Combine(dataRoot, "content"));
        Snapshots = new OverlaySnapshotter(dataRoot);
    }

    /// <summary>The node's data dir, which the content store and snapshots live under.</summary>
    public string DataRoot { get; }
    public ContentStore Content { get; }
    public OverlaySnapshotter Snapshots { get; }

    private int _writers;

    /// <summary>
    /// Held while new content is written and until the image is recorded: garbage collection does not
    /// run meanwhile, so blobs that no image references *yet* are never taken for garbage.
    /// </summary>
    public IDisposable BeginWrite()
    {
        Interlocked.Increment(ref _writers);
        return new WriteLease(this);
    }

    private sealed class WriteLease(NodeImageStore store) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0) Interlocked.Decrement(ref store._writers);
        }
    }

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

    /// <summary>
    /// Deletes what no image or container on this node needs any more: layer snapshots whose chain is
    /// not used, and blobs (configs, manifests, layers) no image references. A container keeps its image's
    /// layers and config (to run, and to commit) even when the image is gone. Blobs being ingested live
    /// in the ingest dir and are never touched. Returns the bytes reclaimed.
    /// </summary>
    public long CollectGarbage(IEnumerable<(string ConfigDigest, string? ManifestDigest, IReadOnlyList<string> DiffIds)> images,
        IEnumerable<(string ImageId, IReadOnlyList<string> DiffIds)> containers)
    {
        if (Volatile.Read(ref _writers) > 0) return 0;
        var keepBlobs = new HashSet<Digest>();
        var keepChains = new HashSet<Digest>();
        void KeepLayers(IReadOnlyList<string> diffIds)
        {
            var digests = diffIds.Select(Digest.Parse).ToList();
            keepBlobs.UnionWith(digests);
            keepChains.UnionWith(OverlaySnapshotter.ChainIds(digests));
        }
        foreach (var (config, manifest, diffIds) in images)
        {
            keepBlobs.Add(Digest.Parse(config));
            if (manifest is not null) keepBlobs.Add(Digest.Parse(manifest));
            KeepLayers(diffIds);
        }
        foreach (var (imageId, diffIds) in containers)
        {
            if (Digest.TryParse(imageId, out var config)) keepBlobs.Add(config);
            KeepLayers(diffIds);
        }

        long reclaimed = 0;
        foreach (var chain in Snapshots.Layers().Where(c => !keepChains.Contains(c)).ToList())
        {
            reclaimed += Snapshots.UsageOf(chain) ?? 0;
            Snapshots.RemoveLayer(chain);
        }
        foreach (var blob in Content.List().Where(b => !keepBlobs.Contains(b)).ToList())
        {
            reclaimed += Content.SizeOf(blob) ?? 0;
            Content.Delete(blob);
        }
        return reclaimed;
    }

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
