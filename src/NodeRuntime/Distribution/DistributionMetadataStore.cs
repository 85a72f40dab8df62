using System.Text.Json;
using System.Text.Json.Serialization;
using Flotilla.NodeRuntime.Storage;

namespace Flotilla.NodeRuntime.Distribution;

/// <summary>
/// One registry blob known to hold a layer: the compressed (or plain) form a registry repository has under
/// <paramref name="Digest"/>, as dockerd's "v2 metadata" keeps it. <paramref name="Seen"/> orders entries, newest first.
/// </summary>
public sealed record LayerBlob(Digest Digest, string MediaType, long Size, string Registry, string Repository, DateTimeOffset Seen);

/// <summary>
/// The engine's distribution metadata, on disk so it survives a restart (dockerd's <c>distribution/</c> dir):
/// <c>v2metadata-by-diffid/sha256/&lt;hex&gt;</c> lists, per layer (DiffID), the registry blobs that hold it and in
/// which repositories; <c>diffid-by-digest/sha256/&lt;hex&gt;</c> maps a blob back to its DiffID. Push uses it to find
/// a layer's compressed blob with HEAD or mount it from another repository instead of compressing and uploading it
/// again; pull records what it downloaded. It is a cache: a missing, unreadable or corrupt file is "unknown", and a
/// write that fails is dropped (the push or pull it describes went through).
/// </summary>
public sealed class DistributionMetadataStore
{
    /// <summary>Repositories remembered per registry blob (the oldest are forgotten): mounts try a few, not all.</summary>
    public const int MaxRepositoriesPerBlob = 8;
    /// <summary>Entries per layer, over all registries and blobs.</summary>
    public const int MaxEntriesPerLayer = 32;
    private const int MaxFileBytes = 256 << 10;
    private const int Stripes = 64;

    private readonly string _byDiffId;
    private readonly string _byDigest;
    // Read-modify-write of one layer's file is serialised; different layers mostly go in parallel.
    private readonly SemaphoreSlim[] _locks = Enumerable.Range(0, Stripes).Select(_ => new SemaphoreSlim(1, 1)).ToArray();

    public DistributionMetadataStore(string root)
    {
        Root = Path.GetFullPath(root);
        _byDiffId = Path.Combine(Root, "v2metadata-by-diffid", Digest.Sha256);
        _byDigest = Path.Combine(Root, "diffid-by-digest", Digest.Sha256);
    }

    public string Root { get; }

    public string PathOf(Digest diffId) => Path.Combine(_byDiffId, diffId.Hex);

    /// <summary>The blobs known to hold <paramref name="diffId"/>, newest first; empty when unknown or unreadable.</summary>
    public async Task<IReadOnlyList<LayerBlob>> BlobsOfAsync(Digest diffId, CancellationToken cancellationToken = default)
    {
        var bytes = await ReadSmallAsync(PathOf(diffId), cancellationToken);
        return bytes is null ? [] : Parse(bytes);
    }

    /// <summary>The DiffID of a registry blob we pulled or pushed; null when unknown or unreadable.</summary>
    public async Task<Digest?> DiffIdOfAsync(Digest blob, CancellationToken cancellationToken = default)
    {
        var bytes = await ReadSmallAsync(Path.Combine(_byDigest, blob.Hex), cancellationToken);
        return bytes is not null && Digest.TryParse(System.Text.Encoding.UTF8.GetString(bytes).Trim(), out var diffId) ? diffId : null;
    }

    /// <summary>
    /// Records that <paramref name="registry"/>'s <paramref name="repository"/> holds <paramref name="diffId"/> as
    /// <paramref name="blob"/>. Never throws for the disk: a lost entry costs an upload later, not this transfer.
    /// </summary>
    public async Task AddAsync(Digest diffId, Digest blob, string mediaType, long size, string registry, string repository,
        CancellationToken cancellationToken = default)
    {
        var gate = _locks[(int)((uint)diffId.Hex.GetHashCode(StringComparison.Ordinal) % Stripes)];
        await gate.WaitAsync(cancellationToken);
        try
        {
            var entries = (await BlobsOfAsync(diffId, cancellationToken)).ToList();
            entries.RemoveAll(e => e.Digest == blob && e.Registry == registry && e.Repository == repository);
            entries.Insert(0, new LayerBlob(blob, mediaType, size, registry, repository, DateTimeOffset.UtcNow));
            var kept = entries
                .GroupBy(e => (e.Registry, e.Digest))
                .SelectMany(g => g.Take(MaxRepositoriesPerBlob))
                .OrderByDescending(e => e.Seen)
                .Take(MaxEntriesPerLayer)
                .ToList();
            var file = new MetadataFile
            {
                Blobs = kept.Select(e => (MetadataEntry?)new MetadataEntry
                {
                    Digest = e.Digest.ToString(),
                    MediaType = e.MediaType,
                    Size = e.Size,
                    Registry = e.Registry,
                    Repository = e.Repository,
                    Seen = e.Seen,
                }).ToList(),
            };
            await WriteAtomicallyAsync(PathOf(diffId), JsonSerializer.SerializeToUtf8Bytes(file), cancellationToken);
            if (blob != diffId)
                await WriteAtomicallyAsync(Path.Combine(_byDigest, blob.Hex), System.Text.Encoding.UTF8.GetBytes(diffId.ToString()), cancellationToken);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // A cache entry not written: the next push finds less, nothing else.
        }
        finally
        {
            gate.Release();
        }
    }

    /// <summary>
    /// Parses one layer's file, keeping the entries that are whole and valid. Anything else — not JSON, the wrong
    /// shape, a bad digest, a blank registry — reads as unknown.
    /// </summary>
    public static IReadOnlyList<LayerBlob> Parse(ReadOnlySpan<byte> json)
    {
        MetadataFile? file;
        try
        {
            file = JsonSerializer.Deserialize<MetadataFile>(json);
        }
        catch (JsonException)
        {
            return [];
        }
        var entries = new List<LayerBlob>();
        foreach (var e in file?.Blobs ?? [])
        {
            if (e is null || !Digest.TryParse(e.Digest, out var digest) || string.IsNullOrWhiteSpace(e.MediaType) || e.Size <= 0
                || string.IsNullOrWhiteSpace(e.Registry) || string.IsNullOrWhiteSpace(e.Repository))
                continue;
            entries.Add(new LayerBlob(digest, e.MediaType, e.Size, e.Registry, e.Repository, e.Seen ?? DateTimeOffset.UnixEpoch));
        }
        return entries.OrderByDescending(e => e.Seen).ToList();
    }

    private static async Task<byte[]?> ReadSmallAsync(string path, CancellationToken cancellationToken)
    {
        try
        {
            await using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 4096, FileOptions.Asynchronous);
            if (file.Length > MaxFileBytes) return null;
            var bytes = new byte[file.Length];
            await file.ReadExactlyAsync(bytes, cancellationToken);
            return bytes;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Absent (the usual case), a directory in its place, unreadable: unknown.
            return null;
        }
    }

    /// <summary>Write to a temp file beside it, then rename over: a reader sees the old file or the new one, never half of one.</summary>
    private async Task WriteAtomicallyAsync(string path, byte[] bytes, CancellationToken cancellationToken)
    {
        var dir = Path.GetDirectoryName(path)!;
        if (!Directory.Exists(Root)) Host.DataRootPermissions.EnsurePrivate(Root);
        Directory.CreateDirectory(dir);
        var temp = Path.Combine(dir, $".{Path.GetFileName(path)}.{Guid.NewGuid():N}.tmp");
        try
        {
            await using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 4096, FileOptions.Asynchronous))
            {
                await file.WriteAsync(bytes, cancellationToken);
                await file.FlushAsync(cancellationToken);
                file.Flush(flushToDisk: true);
            }
            File.Move(temp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    private sealed record MetadataFile
    {
        [JsonPropertyName("blobs")] public List<MetadataEntry?>? Blobs { get; init; }
    }

    private sealed record MetadataEntry
    {
        [JsonPropertyName("digest")] public string? Digest { get; init; }
        [JsonPropertyName("mediaType")] public string? MediaType { get; init; }
        [JsonPropertyName("size")] public long Size { get; init; }
        [JsonPropertyName("registry")] public string? Registry { get; init; }
        [JsonPropertyName("repository")] public string? Repository { get; init; }
        [JsonPropertyName("seen")] public DateTimeOffset? Seen { get; init; }
    }
}
