using System.Collections.Concurrent;
using Akka.Actor;
using Akka.Hosting;
using Flotilla.Contracts;
using Flotilla.Contracts.Registry;
using Flotilla.NodeRuntime.Registry;
using Flotilla.NodeRuntime.Storage;
using Marten;

namespace Flotilla.Cluster.Registry;

/// <summary>A manifest as the pull side serves it: bytes are the blob at <see cref="Path"/>.</summary>
public sealed record ManifestContent(string Digest, string MediaType, long Size, string Path);

/// <summary>A referrer of a subject, as one descriptor of the referrers index.</summary>
public sealed record Referrer(string MediaType, string Digest, long Size, string? ArtifactType, IReadOnlyDictionary<string, string>? Annotations);

public sealed record RemovedBlob(string Digest, long Size);

/// <summary>What <c>flotilla registry gc</c> did.</summary>
public sealed record RegistryGcReport(IReadOnlyList<RemovedBlob> Removed, long FreedBytes, int Kept, int Marked, IReadOnlyList<string> AbandonedUploads);

/// <summary>
/// The registry's use cases, for the gateway: reads go to the <see cref="RepositoryView"/> projection and
/// the content store, changes to the repository entities. Blob bytes never pass through an actor.
/// </summary>
public sealed class RegistryService(IDocumentStore store, IRequiredActor<RepositoryEntity> repositories, RegistryBlobStore blobs)
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Uploads nobody wrote to for this long are abandoned: GC deletes them whatever its grace period.</summary>
    public static readonly TimeSpan UploadExpiry = TimeSpan.FromHours(24);

    public RegistryBlobStore Blobs => blobs;

    /// <summary>
    /// How long a repository's view is reused without asking PostgreSQL. A pull is a burst of requests on one
    /// repository (manifest, config, layers) and each lookup would otherwise be a database round trip on the
    /// blob path. A change made through this process replaces the entry at once (with a fresh load started
    /// right after the change, which the next request joins). Only answers that another gateway's change cannot make
    /// wrong are taken from the cache: a blob or manifest by digest that is there (content-addressed; only a delete
    /// elsewhere can take it away, seen after at most this long). A tag, a tags list, referrers, and any "not here"
    /// are read fresh, so a push through one gateway is pullable through every other at once.
    /// </summary>
    public static readonly TimeSpan ViewCacheTtl = TimeSpan.FromSeconds(2);

    private readonly ConcurrentDictionary<string, CachedView> _views = new();
    private readonly ConcurrentDictionary<string, long> _generations = new();

    private sealed record CachedView(Task<RepositoryView?> Load, long LoadedAt, long Generation);

    private async Task<RepositoryView?> FindAsync(string repository, CancellationToken cancellationToken = default)
    {
        var generation = _generations.GetValueOrDefault(repository);
        if (!_views.TryGetValue(repository, out var cached) || cached.Generation != generation ||
            Environment.TickCount64 - cached.LoadedAt >= (long)ViewCacheTtl.TotalMilliseconds || cached.Load.IsFaulted)
        {
            cached = new CachedView(LoadAsync(repository), Environment.TickCount64, generation);
            // Only cache what was read after the last local change (a change racing this load bumps the generation).
            if (_generations.GetValueOrDefault(repository) == generation) _views[repository] = cached;
        }
        return await cached.Load.WaitAsync(cancellationToken);
    }

    /// <summary>The view as PostgreSQL has it now; the cache then holds it for the requests that follow.</summary>
    private async Task<RepositoryView?> FindFreshAsync(string repository, CancellationToken cancellationToken)
    {
        var generation = _generations.GetValueOrDefault(repository);
        var fresh = new CachedView(LoadAsync(repository), Environment.TickCount64, generation);
        if (_generations.GetValueOrDefault(repository) == generation) _views[repository] = fresh;
        return await fresh.Load.WaitAsync(cancellationToken);
    }

    // Shared by every request that joins it, so not tied to any one request's cancellation.
    private async Task<RepositoryView?> LoadAsync(string repository)
    {
        await using var session = store.QuerySession();
        return await session.LoadAsync<RepositoryView>(RepositoryStreams.Key(repository), CancellationToken.None);
    }

    /// <summary>After a local change: the cached view is stale; start loading the new one for the request that follows.</summary>
    private void Invalidate(string repository)
    {
        var generation = _generations.AddOrUpdate(repository, 1, (_, g) => g + 1);
        _views[repository] = new CachedView(LoadAsync(repository), Environment.TickCount64, generation);
    }

    /// <summary>The blob's size when it is linked into the repository (or is one of its manifests) and on disk.</summary>
    public async Task<long?> BlobSizeAsync(string repository, Digest digest, CancellationToken cancellationToken = default)
    {
        var key = digest.ToString();
        static bool Holds(RepositoryView? view, string key) => view is not null && (view.Blobs.ContainsKey(key) || view.Manifests.ContainsKey(key));
        // Not in the cached view: it may have been linked through another gateway since.
        if (!Holds(await FindAsync(repository, cancellationToken), key) && !Holds(await FindFreshAsync(repository, cancellationToken), key)) return null;
        return blobs.SizeOf(digest);
    }

    public Task LinkBlobAsync(string repository, Descriptor blob, string via, RequestOrigin origin) =>
        AskAsync(new LinkBlob(repository, blob.Digest.ToString(), blob.Size, via, origin));

    /// <summary>
    /// Cross-repository mount: links a blob of <paramref name="from"/> into <paramref name="repository"/>.
    /// Null when the source does not hold it (the client then uploads). Only blobs the source repository
    /// links can be mounted, so knowing a digest is not enough to reach another repository's content.
    /// </summary>
    public async Task<Descriptor?> MountAsync(string repository, Digest digest, string from, RequestOrigin origin,
        CancellationToken cancellationToken = default)
    {
        if (await BlobSizeAsync(from, digest, cancellationToken) is not { } size) return null;
        using var pin = blobs.Pin(digest);
        if (!blobs.Touch(digest)) return null;
        var blob = new Descriptor("application/octet-stream", digest, size);
        await LinkBlobAsync(repository, blob, $"mount from {from}", origin);
        return blob;
    }

    public Task UnlinkBlobAsync(string repository, Digest digest, RequestOrigin origin) =>
        AskAsync(new UnlinkBlob(repository, digest.ToString(), origin));

    /// <summary>
    /// Stores and records a manifest under a tag or its digest. Its bytes are kept verbatim; its digest is
    /// the SHA-256 of those bytes. Every blob it references must be in the repository.
    /// </summary>
    public async Task<(Digest Digest, RegistryManifest Manifest)> PushManifestAsync(string repository, string reference, byte[] body,
        string? contentType, RequestOrigin origin, CancellationToken cancellationToken = default)
    {
        var manifest = RegistryManifest.Parse(body, contentType);
        var digest = Digest.Of(body);
        string? tag = null;
        if (reference.Contains(':'))
        {
            if (!Digest.TryParse(reference, out var named))
                throw new RegistryException(RegistryErrorCodes.DigestInvalid, "invalid digest", reference);
            if (named != digest)
                throw new RegistryException(RegistryErrorCodes.DigestInvalid, "provided digest did not match uploaded content",
                    $"{reference} != {digest}");
        }
        else if (!RegistryNames.IsValidTag(reference))
        {
            throw new RegistryException(RegistryErrorCodes.TagInvalid, "manifest tag did not match URI", reference);
        }
        else
        {
            tag = reference;
        }
        foreach (var blob in manifest.References.Concat(manifest.Children))
            if (!blobs.Content.Exists(Digest.Parse(blob)))
                throw new RegistryException(RegistryErrorCodes.ManifestBlobUnknown, "blob unknown to registry", blob);

        using var pin = blobs.Pin(digest);
        await blobs.PutAsync(body, manifest.MediaType, cancellationToken);
        await AskAsync(new PushManifest(repository, digest.ToString(), manifest.MediaType, body.Length, manifest.Subject,
            manifest.ArtifactType, manifest.Annotations, manifest.References, manifest.Children, tag, origin));
        return (digest, manifest);
    }

    /// <summary>The manifest a tag or digest names in the repository, if its bytes are there.</summary>
    public async Task<ManifestContent?> FindManifestAsync(string repository, string reference, CancellationToken cancellationToken = default)
    {
        var byDigest = reference.Contains(':');
        // A tag can move through another gateway at any time: resolved fresh. A digest from the cache when it is there.
        var view = byDigest ? await FindAsync(repository, cancellationToken) : await FindFreshAsync(repository, cancellationToken);
        if (byDigest && (view is null || !view.Manifests.ContainsKey(reference))) view = await FindFreshAsync(repository, cancellationToken);
        if (view is null) return null;
        var digest = byDigest ? reference : view.Tags.GetValueOrDefault(reference);
        if (digest is null || !view.Manifests.TryGetValue(digest, out var entry) || !Digest.TryParse(digest, out var parsed)) return null;
        var path = blobs.PathOf(parsed);
        return File.Exists(path) ? new ManifestContent(digest, entry.MediaType, entry.Size, path) : null;
    }

    public Task DeleteTagAsync(string repository, string tag, RequestOrigin origin) => AskAsync(new DeleteTag(repository, tag, origin));

    public Task DeleteManifestAsync(string repository, Digest digest, RequestOrigin origin) =>
        AskAsync(new DeleteManifest(repository, digest.ToString(), origin));

    /// <summary>Tags in ASCII order; null when the repository is unknown.</summary>
    public async Task<IReadOnlyList<string>?> TagsAsync(string repository, CancellationToken cancellationToken = default)
    {
        var view = await FindFreshAsync(repository, cancellationToken);
        return view is null || !view.HasContent ? null : view.Tags.Keys.Order(StringComparer.Ordinal).ToList();
    }

    /// <summary>Repositories holding content, in ASCII order.</summary>
    public async Task<IReadOnlyList<string>> CatalogAsync(CancellationToken cancellationToken = default)
    {
        await using var session = store.QuerySession();
        var names = await session.Query<RepositoryView>().Where(r => r.HasContent).Select(r => r.Name).ToListAsync(cancellationToken);
        return names.Order(StringComparer.Ordinal).ToList();
    }

    /// <summary>Manifests of the repository whose <c>subject</c> is <paramref name="subject"/>, optionally of one artifact type.</summary>
    public async Task<IReadOnlyList<Referrer>> ReferrersAsync(string repository, Digest subject, string? artifactType,
        CancellationToken cancellationToken = default)
    {
        var view = await FindFreshAsync(repository, cancellationToken);
        if (view is null) return [];
        var key = subject.ToString();
        return view.Manifests.Where(m => m.Value.Subject == key && (artifactType is null || m.Value.ArtifactType == artifactType))
            .OrderBy(m => m.Value.PushedAt).ThenBy(m => m.Key, StringComparer.Ordinal)
            .Select(m => new Referrer(m.Value.MediaType, m.Key, m.Value.Size, m.Value.ArtifactType, m.Value.Annotations))
            .ToList();
    }

    /// <summary>
    /// Mark and sweep. Mark: every manifest of every repository and every blob a manifest references.
    /// Sweep: unmarked blobs last written before the grace period, never one being published or linked
    /// right now (pinned). Uploads in flight live outside <c>blobs/</c> and are never swept; only those
    /// idle for <see cref="UploadExpiry"/> are deleted. The mark is taken again just before deleting, so
    /// a manifest pushed during the sweep keeps its blobs even with a zero grace period.
    /// </summary>
    public async Task<RegistryGcReport> CollectGarbageAsync(TimeSpan minAge, CancellationToken cancellationToken = default)
    {
        var now = DateTime.UtcNow;
        var cutoff = now - minAge;
        var marked = await MarkAsync(cancellationToken);
        var candidates = blobs.ListBlobs().Where(b => !marked.Contains(b.Digest.ToString()) && b.ModifiedUtc <= cutoff).ToList();
        var kept = blobs.ListBlobs().Count() - candidates.Count;
        var remarked = await MarkAsync(cancellationToken);
        var removed = new List<RemovedBlob>();
        foreach (var blob in candidates)
        {
            if (remarked.Contains(blob.Digest.ToString()) || !blobs.DeleteIfUnused(blob.Digest, cutoff))
            {
                kept++;
                continue;
            }
            removed.Add(new RemovedBlob(blob.Digest.ToString(), blob.Size));
        }
        var uploads = blobs.PurgeAbandonedUploads(now - UploadExpiry);
        return new RegistryGcReport(removed, removed.Sum(r => r.Size), kept, marked.Count, uploads);
    }

    private async Task<HashSet<string>> MarkAsync(CancellationToken cancellationToken)
    {
        await using var session = store.QuerySession();
        var views = await session.Query<RepositoryView>().ToListAsync(cancellationToken);
        var marked = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (digest, manifest) in views.SelectMany(v => v.Manifests))
        {
            marked.Add(digest);
            marked.UnionWith(manifest.References);
            marked.UnionWith(manifest.Children);
        }
        return marked;
    }

    private async Task AskAsync(IRepositoryCommand command)
    {
        for (var attempt = 1; ; attempt++)
        {
            object reply;
            try
            {
                reply = await repositories.ActorRef.Ask<object>(command, AskTimeout);
            }
            finally
            {
                Invalidate(command.Repository);
            }
            switch (reply)
            {
                case RepositoryCommandAccepted:
                    return;
                case RepositoryCommandRejected r:
                    throw new RegistryException(r.ErrorCode, r.Message, r.Detail);
                // Another incarnation wrote first: the next one replays the store, so ask again once.
                case CommandRejected { Code: RejectionCode.Conflict } when attempt == 1:
                    continue;
                case CommandRejected r:
                    throw new RegistryException(RegistryErrorCodes.Unavailable, r.Message);
                default:
                    throw new InvalidOperationException($"unexpected reply {reply.GetType().Name}");
            }
        }
    }
}
