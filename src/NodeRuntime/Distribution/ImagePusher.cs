using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Storage;

namespace Flotilla.NodeRuntime.Distribution;

/// <summary>What a push left in the registry: the tag and the manifest's digest and size.</summary>
public sealed record PushResult(string Tag, Digest ManifestDigest, long Size);

/// <summary>
/// <c>docker push</c> of a locally stored image: layers as stored (uncompressed OCI layers, named by DiffID), the
/// OCI config and the local OCI manifest, pushed verbatim — valid OCI, and no recompression on the way. Each layer
/// is looked up first (HEAD: "Layer already exists"), mounted from another repository of the same registry we know
/// holds it ("Mounted from …"), or uploaded.
/// </summary>
public sealed class ImagePusher(NodeImageStore store, RegistryClient client, BlobSources sources)
{
    private const int MaxConcurrentUploads = 3;

    public Task<RegistrySession> OpenAsync(ImageReference reference, RegistryCredentials? credentials, CancellationToken cancellationToken = default) =>
        client.OpenAsync(reference.Domain, credentials, cancellationToken);

    /// <summary>Pushes the image whose local manifest is <paramref name="localManifest"/> as <paramref name="reference"/> (which has a tag).</summary>
    public async Task<PushResult> PushAsync(RegistrySession session, ImageReference reference, Digest localManifest, IDistributionProgress progress,
        CancellationToken cancellationToken = default)
    {
        var tag = reference.Tag ?? ImageReference.DefaultTag;
        var repository = reference.Path;
        if (!store.Content.Exists(localManifest))
            throw new RegistryException(500, $"image {reference.FamiliarString} is not stored on this node (manifest {localManifest} missing)");
        var manifestBytes = await store.Content.ReadAllAsync(localManifest, cancellationToken);
        var manifest = OciJson.Parse<OciManifest>(manifestBytes, $"local manifest {localManifest}");
        var configDigest = Digest.Parse(manifest.Config.Digest);
        var layers = manifest.Layers.Select(l => (Digest: Digest.Parse(l.Digest), l.Size)).ToList();
        foreach (var blob in layers.Select(l => l.Digest).Append(configDigest))
            if (!store.Content.Exists(blob)) throw new RegistryException(500, $"image {reference.FamiliarString} is not complete on this node: blob {blob} missing");

        // Docker lists the top layer first.
        var distinct = layers.DistinctBy(l => l.Digest).Reverse().ToList();
        foreach (var layer in distinct) await progress.ReportAsync("Preparing", layer.Digest.Short);
        foreach (var layer in distinct) await progress.ReportAsync("Waiting", layer.Digest.Short);
        // Up to three layers at once, as dockerd does (its default is five).
        var serialized = new SerializedProgress(progress);
        using var slots = new SemaphoreSlim(MaxConcurrentUploads);
        using var abort = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var uploads = distinct.Select(async layer =>
        {
            await Task.Yield();
            await slots.WaitAsync(abort.Token);
            try
            {
                await PushLayerAsync(session, repository, layer.Digest, layer.Size, serialized, abort.Token);
            }
            catch
            {
                await abort.CancelAsync();
                throw;
            }
            finally
            {
                slots.Release();
            }
        }).ToList();
        try
        {
            await Task.WhenAll(uploads);
        }
        catch when (uploads.FirstOrDefault(u => u.IsFaulted && u.Exception?.InnerException is not OperationCanceledException) is { } failed)
        {
            // Report the layer that failed, not a sibling cancelled because of it.
            throw failed.Exception!.InnerException!;
        }

        if (await session.StatBlobAsync(repository, configDigest, forPush: true, cancellationToken) is null)
            await session.UploadBlobAsync(repository, configDigest, manifest.Config.Size, () => store.Content.OpenRead(configDigest), null, cancellationToken);

        var pushed = await session.PutManifestAsync(repository, tag, MediaTypes.OciManifest, manifestBytes, cancellationToken);
        return new PushResult(tag, pushed, manifestBytes.Length);
    }

    private async Task PushLayerAsync(RegistrySession session, string repository, Digest digest, long size, IDistributionProgress progress,
        CancellationToken cancellationToken)
    {
        var id = digest.Short;
        if (await session.StatBlobAsync(repository, digest, forPush: true, cancellationToken) is not null)
        {
            sources.Add(session.Domain, repository, digest);
            await progress.ReportAsync("Layer already exists", id);
            return;
        }
        foreach (var from in sources.Candidates(session.Domain, digest, repository).Take(3))
        {
            if (await session.TryMountBlobAsync(repository, digest, from, cancellationToken))
            {
                sources.Add(session.Domain, repository, digest);
                await progress.ReportAsync($"Mounted from {from}", id);
                return;
            }
        }
        var throttle = new ProgressThrottle(TimeSpan.FromMilliseconds(100));
        var pending = Task.CompletedTask;
        await progress.ReportAsync("Pushing", id, 0, size);
        await session.UploadBlobAsync(repository, digest, size, () => store.Content.OpenRead(digest), sent =>
        {
            // Called from the request body's reads: report without blocking them, one line at a time.
            if (pending.IsCompleted && throttle.ShouldReport(final: false)) pending = progress.ReportAsync("Pushing", id, sent, size);
        }, cancellationToken);
        await pending;
        await progress.ReportAsync("Pushing", id, size, size);
        sources.Add(session.Domain, repository, digest);
        await progress.ReportAsync("Pushed", id);
    }
}
