using System.Security.Cryptography;

namespace Flotilla.NodeRuntime.Storage;

/// <summary>Content that did not match the digest it was announced with.</summary>
public sealed class DigestMismatchException(Digest expected, Digest actual)
    : Exception($"digest mismatch: expected {expected}, got {actual}")
{
    public Digest Expected { get; } = expected;
    public Digest Actual { get; } = actual;
}

/// <summary>
/// Content-addressable blobs under <c>&lt;root&gt;/blobs/sha256/&lt;hex&gt;</c>, the OCI image-layout
/// shape. A blob is written to <c>&lt;root&gt;/ingest</c> first and published by an atomic rename
/// only once its digest (and size, when known) verified, so readers never see partial content.
/// </summary>
public sealed class ContentStore
{
    private readonly string _blobs;
    private readonly string _ingest;

    public ContentStore(string root)
    {
        Root = Path.GetFullPath(root);
        _blobs = Path.Combine(Root, "blobs", Digest.Sha256);
        _ingest = Path.Combine(Root, "ingest");
        // Image layers and private registry blobs: root only.
        Host.DataRootPermissions.EnsurePrivate(Root);
        Directory.CreateDirectory(_blobs);
        Directory.CreateDirectory(_ingest);
    }

    public string Root { get; }

    public string PathOf(Digest digest) => Path.Combine(_blobs, digest.Hex);

    public bool Exists(Digest digest) => File.Exists(PathOf(digest));

    public long? SizeOf(Digest digest) => File.Exists(PathOf(digest)) ? new FileInfo(PathOf(digest)).Length : null;

    /// <summary>Opens a published blob for reading; <see cref="FileNotFoundException"/> if absent.</summary>
    public Stream OpenRead(Digest digest) =>
        new FileStream(PathOf(digest), FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.Asynchronous | FileOptions.SequentialScan);

    /// <summary>
    /// Copies the stream into the store. With <paramref name="expected"/> the content must hash to it,
    /// and with <paramref name="expectedSize"/> have that length; otherwise nothing is published.
    /// Writing a blob that already exists is cheap and safe (same content, same name).
    /// </summary>
    public async Task<Descriptor> IngestAsync(Stream content, string mediaType, Digest? expected = null, long? expectedSize = null,
        CancellationToken cancellationToken = default)
    {
        var temp = Path.Combine(_ingest, Guid.NewGuid().ToString("N"));
        try
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            long size = 0;
            await using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous))
            {
                var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(1 << 16);
                try
                {
                    int read;
                    while ((read = await content.ReadAsync(buffer, cancellationToken)) > 0)
                    {
                        size += read;
                        if (expectedSize is { } max && size > max)
                            throw new InvalidDataException($"content is longer than the announced {max} bytes");
                        hash.AppendData(buffer, 0, read);
                        await file.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
                    }
                }
                finally
                {
                    System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
                }
                await file.FlushAsync(cancellationToken);
                file.Flush(flushToDisk: true);
            }
            if (expectedSize is { } want && size != want)
                throw new InvalidDataException($"content is {size} bytes, {want} were announced");
            var actual = Digest.FromHash(hash.GetHashAndReset());
            if (expected is { } e && e != actual) throw new DigestMismatchException(e, actual);

            File.Move(temp, PathOf(actual), overwrite: true);
            return new Descriptor(mediaType, actual, size);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    public Task<Descriptor> IngestAsync(ReadOnlyMemory<byte> content, string mediaType, Digest? expected = null,
        CancellationToken cancellationToken = default) =>
        IngestAsync(new MemoryStream(content.ToArray(), writable: false), mediaType, expected, content.Length, cancellationToken);

    public async Task<byte[]> ReadAllAsync(Digest digest, CancellationToken cancellationToken = default) =>
        await File.ReadAllBytesAsync(PathOf(digest), cancellationToken);

    public bool Delete(Digest digest)
    {
        var path = PathOf(digest);
        if (!File.Exists(path)) return false;
        File.Delete(path);
        return true;
    }

    public IEnumerable<Digest> List() =>
        Directory.EnumerateFiles(_blobs).Select(p => Digest.TryParse("sha256:" + Path.GetFileName(p), out var d) ? d : (Digest?)null)
            .Where(d => d is not null).Select(d => d!.Value);
}
