using System.IO.Compression;
using SharpCompress.Common;
using SharpCompress.Compressors.Xz;
using SharpCompress.Providers;

namespace Flotilla.NodeRuntime.Images;

public enum ArchiveCompressionKind { None, Gzip, Xz, Zstd, Bzip2 }

/// <summary>
/// Recognises the compression of a tar stream by its magic bytes, as Docker's <c>DecompressStream</c> does,
/// and wraps it in the matching decompressor. Plain tar passes through.
/// </summary>
public static class ArchiveCompression
{
    private static ReadOnlySpan<byte> GzipMagic => [0x1f, 0x8b, 0x08];
    private static ReadOnlySpan<byte> XzMagic => [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
    private static ReadOnlySpan<byte> ZstdMagic => [0x28, 0xb5, 0x2f, 0xfd];
    private static ReadOnlySpan<byte> Bzip2Magic => [0x42, 0x5a, 0x68];

    public static ArchiveCompressionKind Detect(ReadOnlySpan<byte> head)
    {
        if (head.StartsWith(GzipMagic)) return ArchiveCompressionKind.Gzip;
        if (head.StartsWith(XzMagic)) return ArchiveCompressionKind.Xz;
        if (head.StartsWith(ZstdMagic)) return ArchiveCompressionKind.Zstd;
        if (head.StartsWith(Bzip2Magic)) return ArchiveCompressionKind.Bzip2;
        return ArchiveCompressionKind.None;
    }

    /// <summary>
    /// Reads the first bytes of <paramref name="input"/> and returns a stream of its decompressed content.
    /// The returned stream owns <paramref name="input"/> unless <paramref name="leaveOpen"/>.
    /// </summary>
    public static async Task<(Stream Stream, ArchiveCompressionKind Kind)> OpenAsync(Stream input, bool leaveOpen = false,
        CancellationToken cancellationToken = default)
    {
        var head = new byte[6];
        var n = await input.ReadAtLeastAsync(head, head.Length, throwOnEndOfStream: false, cancellationToken);
        var replay = new PrefixedStream(head.AsMemory(0, n), input, leaveOpen);
        var kind = Detect(head.AsSpan(0, n));
        Stream stream = kind switch
        {
            ArchiveCompressionKind.None => replay,
            ArchiveCompressionKind.Gzip => new GZipStream(replay, CompressionMode.Decompress, leaveOpen: false),
            ArchiveCompressionKind.Xz => new XZStream(replay),
            ArchiveCompressionKind.Zstd => CompressionProviderRegistry.Default.CreateDecompressStream(CompressionType.ZStandard, replay),
            _ => throw new InvalidDataException("unsupported compression: bzip2"),
        };
        return (stream, kind);
    }
}

/// <summary>Replays bytes already read from a stream, then continues with the stream itself. Read-only, forward-only.</summary>
internal sealed class PrefixedStream(ReadOnlyMemory<byte> prefix, Stream inner, bool leaveOpen) : Storage.ReadOnlyStream
{
    private ReadOnlyMemory<byte> _prefix = prefix;
    private long _position;

    public override long Position { get => _position; set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        int n;
        if (!_prefix.IsEmpty)
        {
            n = Math.Min(buffer.Length, _prefix.Length);
            _prefix.Span[..n].CopyTo(buffer);
            _prefix = _prefix[n..];
        }
        else n = inner.Read(buffer);
        _position += n;
        return n;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        int n;
        if (!_prefix.IsEmpty)
        {
            n = Math.Min(buffer.Length, _prefix.Length);
            _prefix.Span[..n].CopyTo(buffer.Span);
            _prefix = _prefix[n..];
        }
        else n = await inner.ReadAsync(buffer, cancellationToken);
        _position += n;
        return n;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing && !leaveOpen) inner.Dispose();
        base.Dispose(disposing);
    }

    public override async ValueTask DisposeAsync()
    {
        if (!leaveOpen) await inner.DisposeAsync();
        await base.DisposeAsync();
    }
}

/// <summary>Hashes (sha256) and counts what is read through it.</summary>
internal sealed class HashingReadStream(Stream inner) : Storage.ReadOnlyStream
{
    private readonly System.Security.Cryptography.IncrementalHash _hash =
        System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);

    public long BytesRead { get; private set; }

    public Storage.Digest Finish() => Storage.Digest.FromHash(_hash.GetHashAndReset());

    public override long Position { get => BytesRead; set => throw new NotSupportedException(); }
    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        var n = inner.Read(buffer);
        _hash.AppendData(buffer[..n]);
        BytesRead += n;
        return n;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var n = await inner.ReadAsync(buffer, cancellationToken);
        _hash.AppendData(buffer.Span[..n]);
        BytesRead += n;
        return n;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            inner.Dispose();
            _hash.Dispose();
        }
        base.Dispose(disposing);
    }
}
