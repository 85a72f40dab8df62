using System.Security.Cryptography;
using System.Text;
using Microsoft.Win32.SafeHandles;
using static Flotilla.NodeRuntime.Storage.Native;

namespace Flotilla.NodeRuntime.Storage;

/// <summary>
/// Commit: turns an overlay upper dir into an OCI layer tar. A 0:0 character device becomes
/// <c>.wh.NAME</c>; a directory with <c>trusted.overlay.opaque=y</c> is written, then
/// <c>dir/.wh..wh..opq</c>; every <c>trusted.overlay.*</c> xattr is dropped; sockets are skipped
/// (as Docker does). Entries come in ordinal name order, a directory before its children, with
/// whole-second mtimes and no user/group names, so the same upper dir gives the same DiffID.
/// <para>
/// The tar is written by hand (ustar header, preceded by a PAX header when a name, link target,
/// id or size does not fit, or there are xattrs): <see cref="System.Formats.Tar.TarWriter"/> would
/// re-encode binary xattr values (<c>security.capability</c>) as UTF-8. Diff a stopped
/// container's upper dir: paths are read with <c>lstat</c> and <c>O_NOFOLLOW</c>, but a running
/// container could still swap a parent directory.
/// </para>
/// </summary>
public static class LayerDiffer
{
    /// <summary>Writes the layer tar of <paramref name="upperDir"/> to <paramref name="output"/>; returns its DiffID and size.</summary>
    public static (Digest DiffId, long Size) Diff(string upperDir, Stream output, CancellationToken cancellationToken = default)
    {
        upperDir = Path.GetFullPath(upperDir);
        using var hashing = new HashingStream(output);
        var writer = new Writer(hashing);
        var links = new Dictionary<(uint, uint, ulong), string>();
        Walk(upperDir, "", writer, links, cancellationToken);
        writer.End();
        hashing.Flush();
        return (hashing.Digest(), hashing.Length);
    }

    public static Task<(Digest DiffId, long Size)> DiffAsync(string upperDir, Stream output, CancellationToken cancellationToken = default) =>
        Task.Run(() => Diff(upperDir, output, cancellationToken), cancellationToken);

    private static void Walk(string dir, string rel, Writer writer, Dictionary<(uint, uint, ulong), string> links, CancellationToken ct)
    {
        var names = Directory.EnumerateFileSystemEntries(dir).Select(Path.GetFileName).Select(n => n!).ToList();
        names.Sort(StringComparer.Ordinal);
        foreach (var name in names)
        {
            ct.ThrowIfCancellationRequested();
            var path = Path.Combine(dir, name);
            var entryName = rel + name;
            if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, out var st) < 0) throw Error("lstat", path, Errno);
            var xattrs = ListXattrs(path);
            var opaque = xattrs.TryGetValue(LayerUnpacker.OpaqueXattr, out var o) && o is [(byte)'y'];
            foreach (var key in xattrs.Keys.Where(k => k.StartsWith("trusted.overlay.", StringComparison.Ordinal)).ToList()) xattrs.Remove(key);

            switch (st.Type)
            {
                case S_IFCHR when st.RdevMajor == 0 && st.RdevMinor == 0:
                    writer.Write(new Header(rel + LayerUnpacker.WhiteoutPrefix + name, '0', 0, 0, 0, 0, st.Mtime.Seconds));
                    break;
                case S_IFDIR:
                    writer.Write(new Header(entryName + "/", '5', st.Permissions, st.Uid, st.Gid, 0, st.Mtime.Seconds) { Xattrs = xattrs });
                    if (opaque) writer.Write(new Header(entryName + "/" + LayerUnpacker.OpaqueWhiteout, '0', 0, 0, 0, 0, st.Mtime.Seconds));
                    Walk(path, entryName + "/", writer, links, ct);
                    break;
                case S_IFREG:
                    var id = (st.DevMajor, st.DevMinor, st.Ino);
                    if (st.Nlink > 1 && links.TryGetValue(id, out var first))
                    {
                        writer.Write(new Header(entryName, '1', st.Permissions, st.Uid, st.Gid, 0, st.Mtime.Seconds) { LinkName = first, Xattrs = xattrs });
                        break;
                    }
                    if (st.Nlink > 1) links[id] = entryName;
                    var fd = openat(AT_FDCWD, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
                    if (fd < 0) throw Error("open", path, Errno);
                    using (var file = new FileStream(new SafeFileHandle(fd, ownsHandle: true), FileAccess.Read, 1 << 16))
                    {
                        writer.Write(new Header(entryName, '0', st.Permissions, st.Uid, st.Gid, (long)st.Size, st.Mtime.Seconds) { Xattrs = xattrs }, file);
                    }
                    break;
                case S_IFLNK:
                    var target = new FileInfo(path).LinkTarget ?? throw new IOException($"readlink '{path}' failed");
                    writer.Write(new Header(entryName, '2', st.Permissions, st.Uid, st.Gid, 0, st.Mtime.Seconds) { LinkName = target, Xattrs = xattrs });
                    break;
                case S_IFCHR or S_IFBLK:
                    writer.Write(new Header(entryName, st.Type == S_IFCHR ? '3' : '4', st.Permissions, st.Uid, st.Gid, 0, st.Mtime.Seconds)
                    { DevMajor = st.RdevMajor, DevMinor = st.RdevMinor, Xattrs = xattrs });
                    break;
                case S_IFIFO:
                    writer.Write(new Header(entryName, '6', st.Permissions, st.Uid, st.Gid, 0, st.Mtime.Seconds) { Xattrs = xattrs });
                    break;
                default:
                    break; // sockets are not content
            }
        }
    }

    private sealed record Header(string Name, char Type, uint Mode, uint Uid, uint Gid, long Size, long Mtime)
    {
        public string LinkName { get; init; } = "";
        public uint DevMajor { get; init; }
        public uint DevMinor { get; init; }
        public IReadOnlyDictionary<string, byte[]> Xattrs { get; init; } = new Dictionary<string, byte[]>();
    }

    private sealed class Writer(Stream output)
    {
        private const long MaxOctal7 = 0x1FFFFF; // 7 octal digits
        private const long MaxOctal11 = 0x1FFFFFFFF; // 11 octal digits

        public void Write(Header h, Stream? data = null)
        {
            var pax = new List<(string Key, byte[] Value)>();
            var name = Encoding.UTF8.GetBytes(h.Name);
            var link = Encoding.UTF8.GetBytes(h.LinkName);
            if (name.Length > 100 || !Ascii(name)) pax.Add(("path", name));
            if (link.Length > 100 || !Ascii(link)) pax.Add(("linkpath", link));
            if (h.Uid > MaxOctal7) pax.Add(("uid", Encoding.ASCII.GetBytes(h.Uid.ToString())));
            if (h.Gid > MaxOctal7) pax.Add(("gid", Encoding.ASCII.GetBytes(h.Gid.ToString())));
            if (h.Size > MaxOctal11) pax.Add(("size", Encoding.ASCII.GetBytes(h.Size.ToString())));
            if (h.Mtime is < 0 or > MaxOctal11) pax.Add(("mtime", Encoding.ASCII.GetBytes(h.Mtime.ToString())));
            foreach (var (k, v) in h.Xattrs) pax.Add(("SCHILY.xattr." + k, v));
            if (pax.Count > 0)
            {
                var body = new MemoryStream();
                foreach (var (k, v) in pax) Record(body, k, v);
                var paxName = "PaxHeaders.0/" + Path.GetFileName(h.Name.TrimEnd('/'));
                Block(Encoding.UTF8.GetBytes(paxName)[..Math.Min(100, Encoding.UTF8.GetByteCount(paxName))], 'x', 0, 0, 0, body.Length, Math.Clamp(h.Mtime, 0, MaxOctal11), [], 0, 0);
                output.Write(body.GetBuffer(), 0, (int)body.Length);
                Pad(body.Length);
            }
            Block(name[..Math.Min(100, name.Length)], h.Type, h.Mode, Math.Min(h.Uid, MaxOctal7), Math.Min(h.Gid, MaxOctal7),
                Math.Min(h.Size, MaxOctal11), Math.Clamp(h.Mtime, 0, MaxOctal11), link[..Math.Min(100, link.Length)], h.DevMajor, h.DevMinor);
            if (h.Size > 0)
            {
                var copied = Copy(data!, h.Size);
                if (copied != h.Size) throw new IOException($"'{h.Name}' changed size while it was being read");
                Pad(h.Size);
            }
        }

        public void End() => output.Write(new byte[1024]);

        private long Copy(Stream data, long size)
        {
            var buffer = new byte[1 << 16];
            long total = 0;
            while (total < size)
            {
                var n = data.Read(buffer, 0, (int)Math.Min(buffer.Length, size - total));
                if (n == 0) break;
                output.Write(buffer, 0, n);
                total += n;
            }
            return total;
        }

        private void Pad(long size)
        {
            var pad = (int)((512 - size % 512) % 512);
            if (pad > 0) output.Write(new byte[pad]);
        }

        private static bool Ascii(byte[] s) => s.All(b => b is > 0 and < 0x80);

        private static void Record(Stream body, string key, byte[] value)
        {
            var k = Encoding.UTF8.GetBytes(key);
            var rest = k.Length + value.Length + 3; // ' ', '=', '\n'
            var len = rest + rest.ToString().Length;
            if (len.ToString().Length != rest.ToString().Length) len++;
            body.Write(Encoding.ASCII.GetBytes($"{len} "));
            body.Write(k);
            body.WriteByte((byte)'=');
            body.Write(value);
            body.WriteByte((byte)'\n');
        }

        private void Block(byte[] name, char type, uint mode, long uid, long gid, long size, long mtime, byte[] link, uint major, uint minor)
        {
            var h = new byte[512];
            name.CopyTo(h, 0);
            Octal(h, 100, 8, mode);
            Octal(h, 108, 8, uid);
            Octal(h, 116, 8, gid);
            Octal(h, 124, 12, size);
            Octal(h, 136, 12, mtime);
            h[156] = (byte)type;
            link.CopyTo(h, 157);
            "ustar\0"u8.CopyTo(h.AsSpan(257));
            "00"u8.CopyTo(h.AsSpan(263));
            if (type is '3' or '4')
            {
                Octal(h, 329, 8, major);
                Octal(h, 337, 8, minor);
            }
            h.AsSpan(148, 8).Fill((byte)' ');
            var sum = 0;
            foreach (var b in h) sum += b;
            Octal(h, 148, 7, sum);
            output.Write(h);
        }

        /// <summary>Zero-padded octal, NUL-terminated, filling <paramref name="width"/> bytes.</summary>
        private static void Octal(byte[] h, int offset, int width, long value) =>
            Encoding.ASCII.GetBytes(Convert.ToString(value, 8).PadLeft(width - 1, '0') + "\0").CopyTo(h, offset);
    }

    private sealed class HashingStream(Stream inner) : Stream
    {
        private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        private long _length;

        public Digest Digest() => Storage.Digest.FromHash(_hash.GetHashAndReset());

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            _hash.AppendData(buffer);
            _length += buffer.Length;
            inner.Write(buffer);
        }

        public override void Flush() => inner.Flush();

        protected override void Dispose(bool disposing)
        {
            if (disposing) _hash.Dispose();
            base.Dispose(disposing);
        }

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => _length;
        public override long Position { get => _length; set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
