using System.Collections.Concurrent;
using Flotilla.NodeRuntime.Storage;

namespace Flotilla.NodeRuntime.Registry;

/// <summary>A blob of the registry's content store, as garbage collection sees it.</summary>
public sealed record StoredBlob(Digest Digest, long Size, DateTime ModifiedUtc);

/// <summary>
/// The registry's blobs and uploads under <c>&lt;data&gt;/registry</c>: published blobs in the node's
/// content store format (<c>blobs/sha256/&lt;hex&gt;</c>, a root of its own so image GC and registry GC
/// never delete each other's blobs) and upload sessions under <c>uploads/&lt;uuid&gt;/</c>. Content
/// becomes visible only once its digest verified, by an atomic rename; an abandoned upload never does.
/// No actor is involved: every request of the blob path is file I/O in the gateway process.
/// </summary>
public sealed class RegistryBlobStore
{
    /// <summary>Copy buffer for uploads: large writes keep the syscall count (and the hash calls) low.</summary>
    private const int BufferSize = 1 << 20;

    /// <summary>How much of an upload is written before its writeback to disk is started.</summary>
    private const long WritebackChunk = 8 << 20;

    private readonly string _uploads;
    private readonly ConcurrentDictionary<string, UploadSession> _sessions = new();
    private readonly ConcurrentDictionary<Digest, int> _pins = new();

    /// <param name="root">The store's directory (<c>&lt;data&gt;/registry</c>).</param>
    /// <param name="durable">
    /// fsync a blob before publishing it. Off, a power cut (not a process crash) may leave a published
    /// blob short; on, every upload pays one flush of its size (≈0.15 s for 50 MB on the dev VM).
    /// </param>
    public RegistryBlobStore(string root, bool durable = true)
    {
        Content = new ContentStore(root);
        Durable = durable;
        _uploads = Path.Combine(Content.Root, "uploads");
        Directory.CreateDirectory(_uploads);
    }

    public ContentStore Content { get; }
    public bool Durable { get; }

    public string PathOf(Digest digest) => Content.PathOf(digest);

    public long? SizeOf(Digest digest) => Content.SizeOf(digest);

    /// <summary>
    /// Copies a range of a published blob to <paramref name="destination"/> in 1 MiB writes (Kestrel's
    /// SendFile fallback copies 64 KiB at a time and waits for each to drain); the blob is never buffered whole.
    /// </summary>
    public async Task CopyToAsync(Digest digest, long offset, long length, Stream destination, CancellationToken cancellationToken = default)
    {
        using var file = File.OpenHandle(PathOf(digest), FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, FileOptions.SequentialScan);
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(BufferSize);
        try
        {
            var position = offset;
            var end = offset + length;
            while (position < end)
            {
                var read = RandomAccess.Read(file, buffer.AsSpan(0, (int)Math.Min(buffer.Length, end - position)), position);
                if (read == 0) throw new IOException($"blob {digest} is shorter than {end} bytes");
                await destination.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
                position += read;
            }
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    // ---- uploads ----------------------------------------------------------------------------

    public UploadSession StartUpload(string repository)
    {
        var session = UploadSession.Create(_uploads, repository);
        _sessions[session.Id] = session;
        return session;
    }

    /// <summary>The session, from memory or (after a restart) from disk; null if unknown or of another repository.</summary>
    public async Task<UploadSession?> FindUploadAsync(string id, string repository, CancellationToken cancellationToken = default)
    {
        if (!Guid.TryParseExact(id, "D", out var guid) || guid.ToString("D") != id) return null;
        if (!_sessions.TryGetValue(id, out var session))
        {
            var loaded = await UploadSession.LoadAsync(Path.Combine(_uploads, id), cancellationToken);
            if (loaded is null) return null;
            session = _sessions.GetOrAdd(id, loaded);
            if (!ReferenceEquals(session, loaded)) loaded.Dispose();
        }
        return session.Repository == repository && !session.Closed ? session : null;
    }

    /// <summary>
    /// Appends a chunk. With <paramref name="start"/> (a <c>Content-Range</c>) the chunk must begin at the
    /// current end (else <see cref="UploadRangeException"/>, 416); with <paramref name="length"/> the body
    /// must have exactly that many bytes. On failure the session keeps its previous length.
    /// </summary>
    public async Task<long> AppendAsync(UploadSession session, Stream body, long? start, long? length, CancellationToken cancellationToken = default)
    {
        await session.Gate.WaitAsync(cancellationToken);
        try
        {
            if (session.Closed) throw new UploadUnknownException(session.Id);
            if (start is { } s && s != session.Offset)
                throw new UploadRangeException($"chunk starts at {s}, the upload has {session.Offset} bytes", session.Offset);
            await AppendLockedAsync(session, body, length, cancellationToken);
            return session.Offset;
        }
        finally
        {
            session.Gate.Release();
        }
    }

    /// <summary>
    /// Closes the upload with an optional last chunk: verifies the digest of the whole data and publishes
    /// it under that digest. A mismatch discards the upload (<see cref="DigestMismatchException"/>).
    /// </summary>
    public async Task<Descriptor> CompleteAsync(UploadSession session, Digest expected, Stream? lastChunk, long? lastChunkStart,
        CancellationToken cancellationToken = default)
    {
        await session.Gate.WaitAsync(cancellationToken);
        try
        {
            if (session.Closed) throw new UploadUnknownException(session.Id);
            if (lastChunkStart is { } s && s != session.Offset)
                throw new UploadRangeException($"chunk starts at {s}, the upload has {session.Offset} bytes", session.Offset);
            if (lastChunk is not null) await AppendLockedAsync(session, lastChunk, null, cancellationToken);

            var actual = Digest.FromHash(session.Hash.GetCurrentHash());
            if (actual != expected)
            {
                Close(session);
                throw new DigestMismatchException(expected, actual);
            }
            var size = session.Offset;
            using (Pin(actual))
            {
                Publish(session.DataPath, actual);
                Close(session);
            }
            return new Descriptor("application/octet-stream", actual, size);
        }
        finally
        {
            session.Gate.Release();
        }
    }

    /// <summary>Single-request upload (<c>POST ?digest=</c>): the body goes through a session of its own.</summary>
    public async Task<Descriptor> UploadAsync(string repository, Stream body, Digest expected, long? length, CancellationToken cancellationToken = default)
    {
        var session = StartUpload(repository);
        try
        {
            await AppendAsync(session, body, null, length, cancellationToken);
            return await CompleteAsync(session, expected, null, null, cancellationToken);
        }
        finally
        {
            if (!session.Closed) await CancelAsync(session);
        }
    }

    public async Task CancelAsync(UploadSession session)
    {
        await session.Gate.WaitAsync();
        try
        {
            if (!session.Closed) Close(session);
        }
        finally
        {
            session.Gate.Release();
        }
    }

    private async Task AppendLockedAsync(UploadSession session, Stream body, long? length, CancellationToken cancellationToken)
    {
        // Two buffers: the next one fills from the socket while this one is hashed and written.
        var pool = System.Buffers.ArrayPool<byte>.Shared;
        var current = pool.Rent(BufferSize);
        var next = pool.Rent(BufferSize);
        var before = session.Offset;
        long received = 0, writebackFrom = before;
        System.Security.Cryptography.IncrementalHash? hash = null;
        Task<int>? filling = null;
        try
        {
            using var data = File.OpenHandle(session.DataPath, FileMode.Open, FileAccess.Write, FileShare.Read);
            // The hash must only ever cover acknowledged bytes, so a chunk hashes into a copy until it is complete.
            hash = session.Hash.Clone();
            filling = FillAsync(body, current, cancellationToken);
            while (true)
            {
                var filled = await filling!; // set before the loop, and again before every iteration that continues
                filling = null;
                if (filled == 0) break;
                received += filled;
                if (length is { } max && received > max)
                    throw new UploadRangeException($"chunk is longer than the announced {max} bytes", before);
                var full = filled == current.Length;
                if (full) filling = FillAsync(body, next, cancellationToken);
                hash.AppendData(current, 0, filled);
                RandomAccess.Write(data, current.AsSpan(0, filled), before + received - filled);
                if (Durable && before + received - writebackFrom >= WritebackChunk)
                {
                    Writeback.Start(data, writebackFrom, before + received - writebackFrom);
                    writebackFrom = before + received;
                }
                if (!full) break;
                (current, next) = (next, current);
            }
            if (length is { } want && received != want)
                throw new UploadRangeException($"chunk has {received} bytes, {want} were announced", before);
            if (Durable && before + received > writebackFrom) Writeback.Start(data, writebackFrom, before + received - writebackFrom);
            session.Hash.Dispose();
            session.ReplaceHash(hash);
            hash = null;
            session.Offset = before + received;
            session.SaveState();
        }
        catch
        {
            if (filling is not null)
            {
                try { await filling; }
                catch (Exception) { /* the body failed too; the first error is the one to report */ }
            }
            TruncateTo(session.DataPath, before);
            throw;
        }
        finally
        {
            hash?.Dispose();
            pool.Return(current);
            pool.Return(next);
        }
    }

    /// <summary>Reads until the buffer is full or the body ends.</summary>
    private static async Task<int> FillAsync(Stream body, byte[] buffer, CancellationToken cancellationToken)
    {
        var filled = 0;
        int read;
        while (filled < buffer.Length && (read = await body.ReadAsync(buffer.AsMemory(filled), cancellationToken)) > 0) filled += read;
        return filled;
    }

    private static void TruncateTo(string path, long length)
    {
        try
        {
            using var data = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.Read);
            if (data.Length > length) data.SetLength(length);
        }
        catch (IOException)
        {
        }
    }

    /// <summary>Moves verified data into <c>blobs/</c>. A fresh modification time keeps it safe from GC's grace period.</summary>
    private void Publish(string dataPath, Digest digest)
    {
        var target = PathOf(digest);
        if (File.Exists(target))
        {
            File.SetLastWriteTimeUtc(target, DateTime.UtcNow);
            return;
        }
        if (Durable)
        {
            using var data = new FileStream(dataPath, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
            data.Flush(flushToDisk: true);
        }
        File.SetLastWriteTimeUtc(dataPath, DateTime.UtcNow);
        File.Move(dataPath, target, overwrite: true);
    }

    private void Close(UploadSession session)
    {
        session.Closed = true;
        _sessions.TryRemove(session.Id, out _);
        session.Dispose();
        try
        {
            Directory.Delete(session.Directory, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }

    // ---- manifests and mounts ---------------------------------------------------------------

    /// <summary>Stores small content (a manifest) verbatim under its digest.</summary>
    public async Task<Descriptor> PutAsync(ReadOnlyMemory<byte> content, string mediaType, CancellationToken cancellationToken = default)
    {
        var digest = Digest.Of(content.Span);
        using (Pin(digest))
        {
            if (Content.Exists(digest))
            {
                File.SetLastWriteTimeUtc(PathOf(digest), DateTime.UtcNow);
                return new Descriptor(mediaType, digest, content.Length);
            }
            return await Content.IngestAsync(content, mediaType, digest, cancellationToken);
        }
    }

    /// <summary>Marks an existing blob as freshly referenced (a mount), so a concurrent GC's grace period covers it.</summary>
    public bool Touch(Digest digest)
    {
        try
        {
            File.SetLastWriteTimeUtc(PathOf(digest), DateTime.UtcNow);
            return true;
        }
        catch (FileNotFoundException)
        {
            return false;
        }
    }

    // ---- garbage collection support ---------------------------------------------------------

    /// <summary>Keeps GC away from a digest while it is being published and linked.</summary>
    public IDisposable Pin(Digest digest)
    {
        _pins.AddOrUpdate(digest, 1, (_, n) => n + 1);
        return new Unpin(this, digest);
    }

    public bool IsPinned(Digest digest) => _pins.ContainsKey(digest);

    public IEnumerable<StoredBlob> ListBlobs()
    {
        foreach (var digest in Content.List())
        {
            var info = new FileInfo(PathOf(digest));
            if (info.Exists) yield return new StoredBlob(digest, info.Length, info.LastWriteTimeUtc);
        }
    }

    /// <summary>Deletes a blob unless it is pinned or was written after <paramref name="notAfterUtc"/>.</summary>
    public bool DeleteIfUnused(Digest digest, DateTime notAfterUtc)
    {
        if (IsPinned(digest)) return false;
        var info = new FileInfo(PathOf(digest));
        if (!info.Exists || info.LastWriteTimeUtc > notAfterUtc) return false;
        return Content.Delete(digest);
    }

    /// <summary>Removes upload sessions nobody wrote to since <paramref name="idleSinceUtc"/>; returns their ids.</summary>
    public IReadOnlyList<string> PurgeAbandonedUploads(DateTime idleSinceUtc)
    {
        var removed = new List<string>();
        foreach (var directory in Directory.EnumerateDirectories(_uploads))
        {
            var id = Path.GetFileName(directory);
            if (UploadSession.LastTouchedUtc(directory) > idleSinceUtc) continue;
            if (_sessions.TryGetValue(id, out var live) && !live.Gate.Wait(0)) continue;
            try
            {
                if (live is not null) Close(live);
                else Directory.Delete(directory, recursive: true);
                removed.Add(id);
            }
            catch (IOException)
            {
            }
            finally
            {
                live?.Gate.Release();
            }
        }
        return removed;
    }

    /// <summary>Upload sessions on disk (in flight or abandoned).</summary>
    public int UploadCount => Directory.EnumerateDirectories(_uploads).Count();

    private sealed class Unpin(RegistryBlobStore store, Digest digest) : IDisposable
    {
        private int _done;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _done, 1) == 1) return;
            while (true)
            {
                if (!store._pins.TryGetValue(digest, out var n)) return;
                if (n <= 1 ? store._pins.TryRemove(new KeyValuePair<Digest, int>(digest, n)) : store._pins.TryUpdate(digest, n - 1, n)) return;
            }
        }
    }
}
