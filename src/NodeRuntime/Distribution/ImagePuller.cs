using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Storage;

namespace Flotilla.NodeRuntime.Distribution;

/// <summary>
/// What a pull will fetch, known before any progress is written (so a missing manifest or refused credentials
/// are a plain API error): the platform's manifest and the verified image config. <paramref name="ManifestDigest"/> is the
/// digest the reference resolved to (a manifest list's, when it is one): the one Docker prints and records as repo digest.
/// </summary>
public sealed record PullPlan(
    ImageReference Reference,
    RegistrySession Session,
    Digest ManifestDigest,
    Digest PlatformManifestDigest,
    OciManifest Manifest,
    Digest ConfigDigest,
    byte[] ConfigBytes,
    ImageConfigFile Config)
{
    public Digest ImageId => ConfigDigest;
}

/// <summary>
/// <c>docker pull</c>: manifest (an index resolved to the wanted platform), config, then each layer — skipped when
/// its DiffID is already in the content store, otherwise downloaded, verified against the manifest digest,
/// decompressed (gzip, zstd or plain) into the store under its DiffID (verified too) and unpacked as a snapshot.
/// </summary>
public sealed class ImagePuller(NodeImageStore store, RegistryClient client, DistributionMetadataStore metadata)
{
    private const int MaxIndexDepth = 4;
    private const int MaxLayers = 1000;
    private const int MaxConcurrentDownloads = 3;

    /// <summary>Every tag of <paramref name="repository"/>'s repository, for <c>docker pull --all-tags</c>.</summary>
    public async Task<IReadOnlyList<string>> ListTagsAsync(ImageReference repository, RegistryCredentials? credentials,
        CancellationToken cancellationToken = default)
    {
        var session = await client.OpenAsync(repository.Domain, credentials, cancellationToken);
        return await session.ListTagsAsync(repository.Path, cancellationToken: cancellationToken);
    }

    public async Task<PullPlan> ResolveAsync(ImageReference reference, RegistryCredentials? credentials, PlatformSpec platform,
        CancellationToken cancellationToken = default)
    {
        var session = await client.OpenAsync(reference.Domain, credentials, cancellationToken);
        var repository = reference.Path;
        var manifest = await session.GetManifestAsync(repository, reference.Digest ?? reference.Tag ?? ImageReference.DefaultTag, cancellationToken);
        var resolved = manifest.Digest;
        for (var depth = 0; MediaTypes.IsIndex(manifest.MediaType); depth++)
        {
            if (depth >= MaxIndexDepth) throw new RegistryException(500, $"manifest lists nested deeper than {MaxIndexDepth}");
            var index = OciJson.Parse<OciIndex>(manifest.Bytes, $"manifest list {manifest.Digest}");
            var chosen = PlatformSelector.Select(index.Manifests, platform)
                ?? throw new RegistryException(404, $"no matching manifest for {platform} in the manifest list entries");
            if (!Digest.TryParse(chosen.Digest, out var digest)) throw new InvalidDataException($"manifest list entry has invalid digest '{chosen.Digest}'");
            manifest = await session.GetManifestAsync(repository, digest.ToString(), cancellationToken);
            if (manifest.Bytes.Length != chosen.Size)
                throw new RegistryException(500, $"manifest {digest} is {manifest.Bytes.Length} bytes, the manifest list says {chosen.Size}");
        }
        if (manifest.MediaType is RegistrySession.Schema1 or RegistrySession.Schema1Signed)
            throw new RegistryException(400,
                $"Docker Image manifest version 2, schema 1 is not supported: suggest the author of {reference.FamiliarString} to upgrade the image to the OCI Format or Docker Image manifest v2, schema 2");
        if (!MediaTypes.IsManifest(manifest.MediaType))
            throw new RegistryException(400, $"unsupported manifest media type '{manifest.MediaType}' for {reference.FamiliarString}");

        var image = OciJson.Parse<OciManifest>(manifest.Bytes, $"manifest {manifest.Digest}");
        if (image.SchemaVersion != 2) throw new InvalidDataException($"manifest {manifest.Digest} has schemaVersion {image.SchemaVersion}, want 2");
        if (image.Config is null || !Digest.TryParse(image.Config.Digest, out var configDigest))
            throw new InvalidDataException($"manifest {manifest.Digest} has no valid config descriptor");
        if (image.Config.MediaType is not (MediaTypes.OciConfig or MediaTypes.DockerConfig))
            throw new RegistryException(400, $"unsupported config media type '{image.Config.MediaType}': not a container image");
        if (image.Layers is null || image.Layers.Count > MaxLayers) throw new InvalidDataException($"manifest {manifest.Digest} has no layer list or too many layers");

        var configBytes = await session.GetBlobBytesAsync(repository, configDigest, image.Config.Size, cancellationToken);
        var config = OciJson.Parse<ImageConfigFile>(configBytes, $"image config {configDigest}");
        if (config.RootFs?.DiffIds is null || config.RootFs.DiffIds.Count != image.Layers.Count)
            throw new InvalidDataException(
                $"image config {configDigest} lists {config.RootFs?.DiffIds?.Count ?? 0} diff_ids for {image.Layers.Count} layers");
        foreach (var d in config.RootFs.DiffIds)
            if (!Digest.TryParse(d, out _)) throw new InvalidDataException($"image config {configDigest} has invalid diff_id '{d}'");
        for (var i = 0; i < image.Layers.Count; i++)
        {
            var layer = image.Layers[i];
            if (!Digest.TryParse(layer.Digest, out _)) throw new InvalidDataException($"manifest {manifest.Digest} layer {i} has invalid digest '{layer.Digest}'");
            if (!IsLayerMediaType(layer.MediaType)) throw new RegistryException(400, $"unsupported layer media type '{layer.MediaType}'");
        }
        return new PullPlan(reference, session, resolved, manifest.Digest, image, configDigest, configBytes, config);
    }

    private static bool IsLayerMediaType(string mediaType) => mediaType is
        MediaTypes.OciLayer or MediaTypes.OciLayerGzip or MediaTypes.OciLayerZstd or MediaTypes.DockerLayer or MediaTypes.DockerLayerGzip
        or "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
        or "application/vnd.oci.image.layer.nondistributable.v1.tar" or "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        or "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";

    /// <summary>
    /// Fetches the layers not already here and stores config and local manifest. The caller holds the store's write
    /// lease until the image is recorded.
    /// </summary>
    public async Task<LoadedImage> FetchAsync(PullPlan plan, IDistributionProgress progress, CancellationToken cancellationToken = default)
    {
        var repository = plan.Reference.Path;
        var layers = plan.Manifest.Layers;
        var diffIds = plan.Config.RootFs.DiffIds.Select(Digest.Parse).ToList();
        var missing = diffIds.Select(d => !store.Content.Exists(d)).ToArray();
        // An image that is all here already prints no layer lines, as dockerd does when it has the config.
        var complete = !missing.Any(m => m) && store.Content.Exists(plan.ConfigDigest);
        for (var i = 0; i < layers.Count && !complete; i++)
            await progress.ReportAsync(missing[i] ? "Pulling fs layer" : "Already exists", Digest.Parse(layers[i].Digest).Short);

        // Up to three layers download at once (as dockerd); they are extracted in order as they complete.
        var serialized = new SerializedProgress(progress);
        using var slots = new SemaphoreSlim(MaxConcurrentDownloads);
        using var abort = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var downloads = new Task?[layers.Count];
        var firstOf = new Dictionary<Digest, int>();
        for (var i = 0; i < layers.Count; i++)
        {
            if (!missing[i]) continue;
            if (firstOf.TryGetValue(diffIds[i], out var first))
            {
                downloads[i] = downloads[first]; // the same content twice in one image: fetched once
                continue;
            }
            firstOf[diffIds[i]] = i;
            downloads[i] = DownloadInTurnAsync(plan.Session, repository, layers[i], diffIds[i], slots, serialized, abort.Token);
        }

        var stored = new List<Descriptor>(layers.Count);
        try
        {
            for (var i = 0; i < layers.Count; i++)
            {
                var blobDigest = Digest.Parse(layers[i].Digest);
                var id = blobDigest.Short;
                if (downloads[i] is { } download) await download;
                stored.Add(new Descriptor(MediaTypes.OciLayer, diffIds[i], store.Content.SizeOf(diffIds[i]) ?? 0));
                if (!missing[i])
                {
                    await RecordKnownSourceAsync(plan.Session, repository, layers[i], blobDigest, diffIds[i], cancellationToken);
                    continue;
                }
                await serialized.ReportAsync("Extracting", id, stored[i].Size, stored[i].Size);
                await store.UnpackAsync(stored, cancellationToken);
                await serialized.ReportAsync("Pull complete", id);
            }
        }
        catch
        {
            await abort.CancelAsync();
            try
            {
                await Task.WhenAll(downloads.Where(d => d is not null).Distinct()!);
            }
            catch
            {
                // The first failure is the one reported.
            }
            throw;
        }
        await store.UnpackAsync(stored, cancellationToken);

        var configDescriptor = await store.Content.IngestAsync(plan.ConfigBytes, MediaTypes.OciConfig, plan.ConfigDigest, cancellationToken);
        var manifest = await store.Content.IngestAsync(LocalManifest.Build(configDescriptor, stored), MediaTypes.OciManifest,
            cancellationToken: cancellationToken);
        var tag = plan.Reference.ToString();
        return new LoadedImage(plan.ConfigDigest, plan.ConfigDigest, manifest.Digest, stored, [tag], [tag], plan.Config);
    }

    /// <summary>
    /// A layer that was here already is recorded as held by this repository too, as dockerd does — but only when
    /// this node itself verified earlier that the blob is that layer (the blob-to-DiffID map): the manifest's word alone
    /// could point a later push's mount at a blob that is not the layer.
    /// </summary>
    private async Task RecordKnownSourceAsync(RegistrySession session, string repository, OciDescriptor layer, Digest blobDigest, Digest diffId,
        CancellationToken cancellationToken)
    {
        if (blobDigest != diffId && await metadata.DiffIdOfAsync(blobDigest, cancellationToken) == diffId)
            await metadata.AddAsync(diffId, blobDigest, layer.MediaType, layer.Size, session.Domain, repository, cancellationToken);
    }

    private async Task DownloadInTurnAsync(RegistrySession session, string repository, OciDescriptor layer, Digest diffId, SemaphoreSlim slots,
        IDistributionProgress progress, CancellationToken cancellationToken)
    {
        await Task.Yield();
        var blobDigest = Digest.Parse(layer.Digest);
        if (slots.CurrentCount == 0) await progress.ReportAsync("Waiting", blobDigest.Short);
        await slots.WaitAsync(cancellationToken);
        try
        {
            await DownloadLayerAsync(session, repository, layer, blobDigest, diffId, progress, cancellationToken);
        }
        finally
        {
            slots.Release();
        }
    }

    /// <summary>
    /// Streams the blob through its digest check straight into the decompressor and the store (no temporary copy):
    /// the store publishes the layer only if it hashes to the DiffID, and the blob must hash to the manifest's digest.
    /// </summary>
    private async Task DownloadLayerAsync(RegistrySession session, string repository, OciDescriptor layer, Digest blobDigest, Digest diffId,
        IDistributionProgress progress, CancellationToken cancellationToken)
    {
        var id = blobDigest.Short;
        var throttle = new ProgressThrottle(TimeSpan.FromMilliseconds(100));
        await progress.ReportAsync("Downloading", id, 0, layer.Size);
        var hashing = new HashingReadStream(await session.OpenBlobAsync(repository, blobDigest, cancellationToken));
        await using (hashing)
        {
            var counting = new CountingStream(hashing, layer.Size, async read =>
            {
                if (throttle.ShouldReport(final: false)) await progress.ReportAsync("Downloading", id, read, layer.Size);
            });
            try
            {
                var (content, _) = await ArchiveCompression.OpenAsync(counting, leaveOpen: true, cancellationToken);
                await using (content)
                    await store.Content.IngestAsync(content, MediaTypes.OciLayer, diffId, cancellationToken: cancellationToken);
                // What the decompressor did not need (a gzip trailer, padding) still counts for the blob digest.
                var buffer = new byte[1 << 16];
                while (await counting.ReadAsync(buffer, cancellationToken) > 0) { }
            }
            catch (DigestMismatchException ex)
            {
                throw new RegistryException(500, $"layer {blobDigest} does not match its diff_id: expected {ex.Expected}, got {ex.Actual}", inner: ex);
            }
            catch (Exception ex) when (ImageArchiveReader.IsMalformation(ex) && ex is not RegistryException && ex is not HttpRequestException)
            {
                throw new RegistryException(500, $"layer {blobDigest} cannot be read: {ex.Message}", inner: ex);
            }
            var actual = hashing.Finish();
            if (actual != blobDigest || hashing.BytesRead != layer.Size)
            {
                store.Content.Delete(diffId);
                throw new RegistryException(500,
                    $"filesystem layer verification failed for digest {blobDigest}: got {actual} ({hashing.BytesRead} of {layer.Size} bytes)");
            }
        }
        // Downloaded and verified: this registry repository holds the layer as this blob.
        if (blobDigest != diffId)
            await metadata.AddAsync(diffId, blobDigest, layer.MediaType, layer.Size, session.Domain, repository, cancellationToken);
        await progress.ReportAsync("Verifying Checksum", id);
        await progress.ReportAsync("Download complete", id);
    }

    /// <summary>Counts bytes read, refuses more than announced, and reports progress.</summary>
    private sealed class CountingStream(Stream inner, long limit, Func<long, Task> report) : ReadOnlyStream
    {
        private long _read;
        public override long Position { get => _read; set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        // Some decompressors read synchronously: counted and limited, progress only on the async path.
        public override int Read(Span<byte> buffer)
        {
            var n = inner.Read(buffer);
            _read += n;
            if (_read > limit) throw new RegistryException(500, $"layer is longer than the {limit} bytes its descriptor announces");
            return n;
        }
        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var n = await inner.ReadAsync(buffer, cancellationToken);
            _read += n;
            if (_read > limit) throw new RegistryException(500, $"layer is longer than the {limit} bytes its descriptor announces");
            if (n > 0) await report(_read);
            return n;
        }
    }
}
