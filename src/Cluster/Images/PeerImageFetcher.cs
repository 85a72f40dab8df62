using Flotilla.Cluster.Nodes;
using Flotilla.Cluster.Queries;
using Flotilla.Contracts;
using Flotilla.Contracts.Images;
using Flotilla.NodeRuntime.Distribution;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Flotilla.Cluster.Images;

/// <summary>
/// Gets an image this host lacks from the other hosts of the cluster: the ready nodes with an API endpoint, those
/// the image's stream lists as holding it first, are asked in turn for each missing blob (config, layers by DiffID,
/// and the local manifest when one is known), and the arrival is recorded as <see cref="ImageReplicated"/> so the
/// image's stream says this host holds it now.
/// </summary>
public sealed class PeerImageFetcher(
    NodeImageStore store,
    PeerBlobFetcher blobs,
    ClusterQueries queries,
    ImageService images,
    NodeDescription self,
    ILogger<PeerImageFetcher>? logger = null) : IImageContentSource
{
    private readonly ILogger _log = logger ?? NullLogger<PeerImageFetcher>.Instance;

    public async Task EnsureAsync(string imageId, string? configDigest, IReadOnlyList<Digest> layers, CancellationToken cancellationToken)
    {
        var wanted = new List<Digest>();
        if (configDigest is not null) wanted.Add(Digest.Parse(configDigest));
        wanted.AddRange(layers);
        var missing = wanted.Distinct().Where(d => !store.Content.Exists(d)).ToList();
        if (missing.Count == 0) return;

        // Fetched blobs belong to no image on this host until the image's blobs are all here: no GC meanwhile.
        using var lease = store.BeginWrite();
        var image = await queries.ImageAsync(imageId, cancellationToken);
        var peers = await PeersAsync(image, cancellationToken);
        if (peers.Count == 0)
            throw new ImageUnavailableException($"image {imageId} is not stored on this node and no other ready host has an API endpoint to fetch it from");

        var from = new List<string>();
        long bytes = 0;
        void Count(BlobFetch fetched)
        {
            if (fetched.From is not { } peer || fetched.Joined) return;
            bytes += fetched.Bytes;
            if (!from.Contains(peer)) from.Add(peer);
            // The peer that just served is asked first for the rest.
            peers = [.. peers.Where(p => p.Node == peer), .. peers.Where(p => p.Node != peer)];
        }

        foreach (var digest in missing)
        {
            try
            {
                Count(await blobs.FetchAsync(digest, peers, cancellationToken));
            }
            catch (PeerFetchException ex)
            {
                throw new ImageUnavailableException(
                    $"image {imageId} is not stored on this node and no peer could serve it (tried {string.Join(", ", peers.Select(p => p.Node))}): {ex.Message}");
            }
        }
        // The stored manifest is what a push sends; save and run do without it, so its absence is no failure.
        if (image?.ManifestDigest is { } m && Digest.TryParse(m, out var manifest) && !store.Content.Exists(manifest))
        {
            try
            {
                Count(await blobs.FetchAsync(manifest, peers, cancellationToken));
            }
            catch (PeerFetchException ex)
            {
                _log.LogWarning("Image {Image}: manifest not fetched: {Reason}", imageId, ex.Message);
            }
        }

        if (from.Count > 0) await RecordAsync(imageId, from, bytes);
    }

    /// <summary>Ready hosts with an API endpoint other than this one; those the image lists as holding it first.</summary>
    private async Task<IReadOnlyList<PeerEndpoint>> PeersAsync(ImageView? image, CancellationToken cancellationToken)
    {
        var holders = image?.Nodes ?? [];
        var nodes = await queries.NodesAsync(cancellationToken);
        return nodes
            .Where(n => n.Status == NodeStatus.Ready && n.ApiEndpoint.Length > 0 && n.Name != self.Name && n.ApiEndpoint != self.ApiEndpoint)
            .OrderBy(n => holders.Contains(n.Name) ? holders.IndexOf(n.Name) : int.MaxValue)
            .ThenBy(n => n.Name, StringComparer.Ordinal)
            .Select(n => new PeerEndpoint(n.Name, n.ApiEndpoint))
            .ToList();
    }

    /// <summary>
    /// The content is here and verified whatever the record says: a refused or failed record (the image was removed
    /// meanwhile, the cluster is busy) is logged, not a reason to fail the container that needed the image.
    /// </summary>
    private async Task RecordAsync(string imageId, IReadOnlyList<string> from, long bytes)
    {
        try
        {
            await images.RecordReplicaAsync(new RecordImageReplica(imageId, self.Name, from, bytes, RequestOrigin.System()));
        }
        catch (Exception ex) when (ex is OperationRejectedException or Akka.Actor.AskTimeoutException or InvalidOperationException)
        {
            _log.LogWarning("Image {Image}: fetched from {Peers} but not recorded: {Reason}", imageId, string.Join(", ", from), ex.Message);
        }
    }
}
