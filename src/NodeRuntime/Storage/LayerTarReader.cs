using System.Buffers;
using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;

namespace Flotilla.NodeRuntime.Storage;

/// <summary>How a layer blob is compressed, detected from its first bytes (never from a media type).</summary>
public enum LayerCompression
{
    None,
    Gzip,
    Zstd,
}

/// <summary>Limits on an untrusted layer tar. The defaults are generous for real images.</summary>
public sealed record LayerLimits
{
    /// <summary>Longest entry or link name after normalisation (Linux PATH_MAX).</summary>
    public int MaxPathLength { get; init; } = 4096;

    /// <summary>Largest PAX (<c>x</c>/<c>g</c>) or GNU long-name (<c>L</c>/<c>K</c>) header payload.</summary>
    public int MaxMetaHeaderBytes { get; init; } = 1 << 20;

    public int MaxEntries { get; init; } = 1_000_000;

    /// <summary>Largest uncompressed tar stream (a guard against decompression bombs).</summary>
    public long MaxUncompressedBytes { get; init; } = 256L << 30;
}

/// <summary>
/// Reads an untrusted layer blob: detects plain / gzip / zstd by magic bytes, validates every tar
/// header block itself before <see cref="TarReader"/> sees it (checksum, known type flags, size
/// caps on PAX and GNU long-name payloads, header-only types with no data, truncation), and hashes
/// the uncompressed stream as it passes, so <see cref="Finish"/> yields the layer's DiffID.
/// </summary>
public sealed class LayerTarReader : IDisposable
{
    private readonly Stream _decompressed;
    private readonly GuardStream _guard;
    private readonly TarReader _tar;
    private readonly LayerLimits _limits;
    private int _entries;

    public LayerTarReader(Stream blob, LayerLimits? limits = null)
    {
        _limits = limits ?? new LayerLimits();
        (_decompressed, Compression) = Decompress(blob);
        _guard = new GuardStream(_decompressed, _limits);
        _tar = new TarReader(_guard, leaveOpen: true);
    }

    public LayerCompression Compression { get; }

    /// <summary>
    /// The next entry, or null at the end of the archive. <paramref name="xattrs"/> are the entry's
    /// PAX <c>SCHILY.xattr.*</c> values as raw bytes (TarReader decodes PAX values as UTF-8, which
    /// would corrupt binary values such as <c>security.capability</c>).
    /// </summary>
    public TarEntry? Next(out IReadOnlyDictionary<string, byte[]> xattrs)
    {
        while (true)
        {
            TarEntry? entry;
            try
            {
                entry = _tar.GetNextEntry(copyData: false);
            }
            catch (Exception ex) when (ex is EndOfStreamException or FormatException or ArgumentException or OverflowException)
            {
                throw new InvalidDataException($"malformed layer tar: {ex.Message}", ex);
            }
            if (entry is null)
            {
                xattrs = Empty;
                return null;
            }
            if (entry.EntryType == TarEntryType.GlobalExtendedAttributes) continue;
            if (++_entries > _limits.MaxEntries)
                throw new InvalidDataException($"layer tar has more than {_limits.MaxEntries} entries");
            xattrs = _guard.TakeXattrs();
            return entry;
        }
    }

    /// <summary>Reads the rest of the stream (trailing zero blocks count in the DiffID) and returns DiffID and size.</summary>
    public (Digest DiffId, long Size) Finish()
    {
        var buffer = ArrayPool<byte>.Shared.Rent(1 << 16);
        try
        {
            while (_guard.Read(buffer, 0, buffer.Length) > 0) { }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        return (_guard.Digest(), _guard.Total);
    }

    public void Dispose()
    {
        _tar.Dispose();
        _guard.Dispose();
        _decompressed.Dispose();
    }

    private static readonly IReadOnlyDictionary<string, byte[]> Empty = new Dictionary<string, byte[]>();

    /// <summary>Wraps <paramref name="blob"/> in the decompressor its magic bytes call for.</summary>
    public static (Stream Stream, LayerCompression Compression) Decompress(Stream blob)
    {
        var head = new byte[6];
        var n = 0;
        while (n < head.Length)
        {
            var r = blob.Read(head, n, head.Length - n);
            if (r == 0) break;
            n += r;
        }
        Stream whole = new Images.PrefixedStream(head.AsMemory(0, n), blob, leaveOpen: false);
        var h = head.AsSpan(0, n);
        if (h.StartsWith((ReadOnlySpan<byte>)[0x1f, 0x8b])) return (new GZipStream(whole, CompressionMode.Decompress), LayerCompression.Gzip);
        if (h.StartsWith((ReadOnlySpan<byte>)[0x28, 0xb5, 0x2f, 0xfd])) return (new ZstdSharp.DecompressionStream(whole), LayerCompression.Zstd);
        if (h.StartsWith("BZh"u8)) throw new InvalidDataException("bzip2-compressed layers are not supported");
        if (h.StartsWith((ReadOnlySpan<byte>)[0xfd, (byte)'7', (byte)'z', (byte)'X', (byte)'Z', 0])) throw new InvalidDataException("xz-compressed layers are not supported");
        return (whole, LayerCompression.None);
    }

    /// <summary>
    /// A pass-through stream that tracks tar block structure: every header block is checked before
    /// the reader parses it, and every byte is hashed and counted.
    /// </summary>
    private sealed class GuardStream(Stream inner, LayerLimits limits) : ReadOnlyStream
    {
        private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        private readonly byte[] _header = new byte[512];
        private int _headerFill;
        private long _dataLeft;     // data bytes of the current entry still to pass
        private long _padLeft;      // padding after the data
        private MemoryStream? _meta; // payload of a PAX / GNU long-name header being collected
        private char _metaType;
        private long? _paxSize;
        private Dictionary<string, byte[]>? _pendingXattrs;
        private Dictionary<string, byte[]>? _entryXattrs;
        private bool _ended;

        public long Total { get; private set; }

        public Digest Digest() => Storage.Digest.FromHash(_hash.GetHashAndReset());

        public IReadOnlyDictionary<string, byte[]> TakeXattrs()
        {
            var x = _entryXattrs;
            _entryXattrs = null;
            return x ?? Empty;
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            var n = inner.Read(buffer);
            if (n == 0)
            {
                if (!buffer.IsEmpty && !_ended && (_headerFill > 0 || _dataLeft > 0 || _padLeft > 0))
                    throw new InvalidDataException("layer tar is truncated");
                return 0;
            }
            Total += n;
            if (Total > limits.MaxUncompressedBytes)
                throw new InvalidDataException($"layer tar is larger than {limits.MaxUncompressedBytes} bytes");
            _hash.AppendData(buffer[..n]);
            if (!_ended) Track(buffer[..n]);
            return n;
        }

        private void Track(ReadOnlySpan<byte> chunk)
        {
            while (!chunk.IsEmpty && !_ended)
            {
                if (_dataLeft > 0)
                {
                    var take = (int)Math.Min(_dataLeft, chunk.Length);
                    _meta?.Write(chunk[..take]);
                    _dataLeft -= take;
                    chunk = chunk[take..];
                    if (_dataLeft == 0 && _meta is not null) EndMeta();
                    continue;
                }
                if (_padLeft > 0)
                {
                    var take = (int)Math.Min(_padLeft, chunk.Length);
                    _padLeft -= take;
                    chunk = chunk[take..];
                    continue;
                }
                var want = Math.Min(512 - _headerFill, chunk.Length);
                chunk[..want].CopyTo(_header.AsSpan(_headerFill));
                _headerFill += want;
                chunk = chunk[want..];
                if (_headerFill == 512)
                {
                    _headerFill = 0;
                    Header();
                }
            }
        }

        private void Header()
        {
            var h = _header.AsSpan();
            if (!h.ContainsAnyExcept((byte)0))
            {
                _ended = true; // end-of-archive marker: the rest is only hashed
                return;
            }
            VerifyChecksum(h);
            var type = (char)h[156];
            var size = ParseNumber(h.Slice(124, 12), "size");
            switch (type)
            {
                case 'x' or 'g' or 'L' or 'K':
                    if (size > limits.MaxMetaHeaderBytes)
                        throw new InvalidDataException($"tar {(type is 'x' or 'g' ? "PAX" : "GNU long-name")} header of {size} bytes exceeds the {limits.MaxMetaHeaderBytes}-byte limit");
                    _meta = new MemoryStream((int)size);
                    _metaType = type;
                    Data(size);
                    if (size == 0) EndMeta();
                    return;
                case '0' or '\0' or '7':
                    break;
                case '1' or '2' or '3' or '4' or '5' or '6':
                    if ((_paxSize ?? size) != 0) throw new InvalidDataException($"tar entry of type '{type}' carries {size} data bytes");
                    break;
                default:
                    throw new InvalidDataException($"unsupported tar entry type '{(char.IsAsciiLetterOrDigit(type) ? type.ToString() : $"0x{(int)type:x2}")}'");
            }
            _entryXattrs = _pendingXattrs;
            _pendingXattrs = null;
            Data(_paxSize ?? size);
            _paxSize = null;
        }

        private void Data(long size)
        {
            _dataLeft = size;
            _padLeft = (512 - size % 512) % 512;
        }

        private void EndMeta()
        {
            var bytes = _meta!.ToArray();
            _meta = null;
            if (_metaType == 'x') ParsePax(bytes);
        }

        /// <summary>PAX records: "<len> <key>=<value>\n"; values kept as raw bytes.</summary>
        private void ParsePax(byte[] data)
        {
            var span = data.AsSpan();
            while (!span.IsEmpty)
            {
                if (span[0] == 0) break; // NUL padding
                var sp = span.IndexOf((byte)' ');
                var len = 0;
                if (sp <= 0 || sp > 10 || !int.TryParse(span[..sp], System.Globalization.NumberStyles.None, null, out len)
                    || len <= sp + 1 || len > span.Length || span[len - 1] != (byte)'\n')
                    throw new InvalidDataException("malformed PAX header record");
                var record = span[(sp + 1)..(len - 1)];
                var eq = record.IndexOf((byte)'=');
                if (eq <= 0) throw new InvalidDataException("malformed PAX header record");
                var key = Encoding.UTF8.GetString(record[..eq]);
                var value = record[(eq + 1)..];
                if (key == "size")
                {
                    if (!long.TryParse(value, System.Globalization.NumberStyles.None, null, out var s) || s < 0)
                        throw new InvalidDataException("malformed PAX size");
                    _paxSize = s;
                }
                else if (key.StartsWith("SCHILY.xattr.", StringComparison.Ordinal))
                {
                    (_pendingXattrs ??= new(StringComparer.Ordinal))[key["SCHILY.xattr.".Length..]] = value.ToArray();
                }
                else if (key.StartsWith("GNU.sparse", StringComparison.Ordinal))
                {
                    throw new InvalidDataException("sparse tar entries are not supported");
                }
                span = span[len..];
            }
        }

        private static void VerifyChecksum(ReadOnlySpan<byte> h)
        {
            var stored = ParseNumber(h.Slice(148, 8), "checksum");
            long unsigned = 0, signed = 0;
            for (var i = 0; i < 512; i++)
            {
                var b = i is >= 148 and < 156 ? (byte)' ' : h[i];
                unsigned += b;
                signed += (sbyte)b;
            }
            if (stored != unsigned && stored != signed) throw new InvalidDataException("tar header checksum mismatch (not a tar, or corrupt)");
        }

        /// <summary>An octal field (NUL/space padded) or GNU base-256 (high bit set, positive only).</summary>
        private static long ParseNumber(ReadOnlySpan<byte> field, string what)
        {
            if ((field[0] & 0x80) != 0)
            {
                if (field[0] != 0x80) throw new InvalidDataException($"negative or oversized base-256 tar {what}");
                long v = 0;
                foreach (var b in field[1..])
                {
                    if (v > (long.MaxValue >> 8)) throw new InvalidDataException($"tar {what} overflows");
                    v = (v << 8) | b;
                }
                return v;
            }
            long r = 0;
            var seen = false;
            foreach (var b in field)
            {
                if (b is (byte)' ' or 0)
                {
                    if (seen) break;
                    continue;
                }
                if (b is < (byte)'0' or > (byte)'7') throw new InvalidDataException($"invalid octal tar {what}");
                seen = true;
                r = (r << 3) | (long)(b - '0');
            }
            return r;
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) _hash.Dispose();
            base.Dispose(disposing);
        }

    }
}
