using System.Formats.Tar;
using Microsoft.Win32.SafeHandles;
using static Flotilla.NodeRuntime.Storage.Native;

namespace Flotilla.NodeRuntime.Storage;

/// <summary>What <c>docker cp</c>'s stat header says about a path (lstat of its last component).</summary>
public sealed record TreePathStat(long Size, uint Mode, DateTimeOffset ModifiedAt, string LinkTarget)
{
    public bool IsDirectory => (Mode & S_IFMT) == S_IFDIR;
    public bool IsSymlink => (Mode & S_IFMT) == S_IFLNK;
    public uint Permissions => Mode & 0xFFF;
}

/// <summary>
/// Writes a tree of a <see cref="RootHandle"/> as tar (docker cp out of a container, docker export) by walking
/// fds: the start is looked up with <c>openat2</c> inside the root, every child is opened with <c>O_NOFOLLOW</c> from
/// its parent's fd, so a running container that swaps a directory for a symlink cannot lead the walk out of its
/// rootfs. Regular files are opened <c>O_NONBLOCK</c> (a FIFO planted in their place cannot block the engine) and
/// written with the length they had when opened (zero-padded if they shrink, cut if they grow). Sockets are left out.
/// </summary>
public static class TreeArchiver
{
    /// <summary>lstat of <paramref name="containerPath"/>: its directory resolved inside the root, the last component not followed; null when absent.</summary>
    public static TreePathStat? Stat(RootHandle root, string containerPath)
    {
        int dir;
        string leaf;
        try
        {
            (dir, leaf) = root.OpenParent(containerPath);
        }
        catch (IOException e) when (e.HResult is ENOENT or ENOTDIR or ELOOP)
        {
            return null;
        }
        try
        {
            if (!FdTree.TryStat(dir, leaf, out var st)) return null;
            var link = st.Type == S_IFLNK ? ReadLink(dir, leaf) : "";
            return new TreePathStat(st.Type == S_IFREG ? (long)st.Size : 0, st.Mode, ModifiedAt(st), link);
        }
        finally
        {
            close(dir);
        }
    }

    /// <summary>The entry for <paramref name="containerPath"/> (named <paramref name="entryName"/>) and, for a directory, everything under it.</summary>
    public static async Task WriteAsync(TarWriter tar, RootHandle root, string containerPath, string entryName, CancellationToken cancellationToken)
    {
        var (dir, leaf) = root.OpenParent(containerPath);
        try
        {
            await WriteEntryAsync(tar, dir, leaf, entryName, cancellationToken);
        }
        finally
        {
            close(dir);
        }
    }

    /// <summary>The contents of the root, without an entry for the root itself (docker export).</summary>
    public static async Task WriteContentsAsync(TarWriter tar, RootHandle root, CancellationToken cancellationToken)
    {
        var dir = openat(root.Fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
        if (dir < 0) throw Error("open", root.Path, Errno);
        try
        {
            foreach (var name in FdTree.Names(dir))
                await WriteEntryAsync(tar, dir, name, name, cancellationToken);
        }
        finally
        {
            close(dir);
        }
    }

    private static async Task WriteEntryAsync(TarWriter tar, int dir, string leaf, string name, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (!FdTree.TryStat(dir, leaf, out var st)) return; // vanished meanwhile
        switch (st.Type)
        {
            case S_IFDIR:
                var fd = openat(dir, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
                if (fd < 0) return; // replaced meanwhile (by a symlink: ELOOP/ENOTDIR): not followed
                try
                {
                    if (statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, out st) < 0) throw Error("statx", name, Errno);
                    await tar.WriteEntryAsync(Describe(new PaxTarEntry(TarEntryType.Directory, name.EndsWith('/') ? name : name + "/"), st), cancellationToken);
                    var prefix = name is "." or "./" ? "" : name.TrimEnd('/') + "/";
                    foreach (var child in FdTree.Names(fd))
                        await WriteEntryAsync(tar, fd, child, prefix + child, cancellationToken);
                }
                finally
                {
                    close(fd);
                }
                break;
            case S_IFREG:
                var file = openat(dir, leaf, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
                if (file < 0) return;
                using (var handle = new SafeFileHandle(file, ownsHandle: true))
                {
                    if (statx(file, "", AT_EMPTY_PATH, STATX_BASIC_STATS, out st) < 0) throw Error("statx", name, Errno);
                    if (st.Type != S_IFREG) return; // swapped for something else between the lstat and the open
                    await using var data = new ExactLengthStream(new FileStream(handle, FileAccess.Read, 1 << 16), (long)st.Size);
                    var entry = Describe(new PaxTarEntry(TarEntryType.RegularFile, name), st);
                    entry.DataStream = data;
                    await tar.WriteEntryAsync(entry, cancellationToken);
                }
                break;
            case S_IFLNK:
                string target;
                try
                {
                    target = ReadLink(dir, leaf);
                }
                catch (IOException)
                {
                    return;
                }
                await tar.WriteEntryAsync(Describe(new PaxTarEntry(TarEntryType.SymbolicLink, name) { LinkName = target }, st), cancellationToken);
                break;
            case S_IFIFO:
                await tar.WriteEntryAsync(Describe(new PaxTarEntry(TarEntryType.Fifo, name), st), cancellationToken);
                break;
            case S_IFCHR or S_IFBLK:
                var device = new PaxTarEntry(st.Type == S_IFCHR ? TarEntryType.CharacterDevice : TarEntryType.BlockDevice, name)
                {
                    DeviceMajor = (int)st.RdevMajor,
                    DeviceMinor = (int)st.RdevMinor,
                };
                await tar.WriteEntryAsync(Describe(device, st), cancellationToken);
                break;
            default:
                return; // sockets are not part of an archive
        }
    }

    private static PaxTarEntry Describe(PaxTarEntry entry, Statx st)
    {
        entry.Mode = (UnixFileMode)st.Permissions;
        entry.Uid = (int)st.Uid;
        entry.Gid = (int)st.Gid;
        entry.ModificationTime = ModifiedAt(st);
        return entry;
    }

    private static DateTimeOffset ModifiedAt(Statx st) =>
        DateTimeOffset.FromUnixTimeSeconds(st.Mtime.Seconds).AddTicks(st.Mtime.Nanoseconds / 100);

    /// <summary>Exactly <c>length</c> bytes of a file that may change while it is read: cut when it grew, zero-padded when it shrank.</summary>
    private sealed class ExactLengthStream(Stream inner, long length) : Stream
    {
        private long _position;
        private bool _innerEnded;

        public override bool CanRead => true;
        public override bool CanSeek => true; // TarWriter takes the entry's size from Length
        public override bool CanWrite => false;
        public override long Length => length;

        public override long Position
        {
            get => _position;
            set => Seek(value, SeekOrigin.Begin);
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            var want = (int)Math.Min(buffer.Length, length - _position);
            if (want <= 0) return 0;
            var n = _innerEnded ? 0 : inner.Read(buffer[..want]);
            if (n == 0)
            {
                _innerEnded = true;
                buffer[..want].Clear();
                n = want;
            }
            _position += n;
            return n;
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var want = (int)Math.Min(buffer.Length, length - _position);
            if (want <= 0) return 0;
            var n = _innerEnded ? 0 : await inner.ReadAsync(buffer[..want], cancellationToken);
            if (n == 0)
            {
                _innerEnded = true;
                buffer.Span[..want].Clear();
                n = want;
            }
            _position += n;
            return n;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override long Seek(long offset, SeekOrigin origin)
        {
            var target = origin switch
            {
                SeekOrigin.Begin => offset,
                SeekOrigin.Current => _position + offset,
                _ => length + offset,
            };
            if (target != _position) throw new NotSupportedException("the stream is read once, front to back");
            return _position;
        }

        public override void Flush()
        {
        }

        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
