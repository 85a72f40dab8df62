using System.Formats.Tar;
using System.Text;
using Microsoft.Win32.SafeHandles;
using static Flotilla.NodeRuntime.Storage.Native;

namespace Flotilla.NodeRuntime.Storage;

/// <summary>
/// A layer entry that would write outside the target, or create something the layer may not
/// (a device node). Malformed archives are <see cref="InvalidDataException"/> instead.
/// </summary>
public sealed class UnsafeLayerException(string entry, string reason)
    : Exception($"unsafe layer entry '{Shorten(entry)}': {reason}")
{
    public string Entry { get; } = entry;

    private static string Shorten(string s) => s.Length > 200 ? s[..200] + "…" : s;
}

public sealed record LayerUnpackOptions
{
    /// <summary>Create block and character devices from the layer (privileged images only). FIFOs are always allowed.</summary>
    public bool AllowDevices { get; init; }

    public LayerLimits Limits { get; init; } = new();
}

/// <param name="DiffId">sha256 of the uncompressed tar stream.</param>
/// <param name="Size">Length of the uncompressed tar stream.</param>
public sealed record LayerUnpackResult(Digest DiffId, long Size, LayerCompression Compression, int Entries);

/// <summary>
/// Applies one untrusted layer tar to a fresh directory in overlayfs form, so that unpacked layers
/// stack as overlay lowerdirs: <c>dir/.wh.NAME</c> becomes a 0:0 character device <c>dir/NAME</c>,
/// <c>dir/.wh..wh..opq</c> becomes <c>trusted.overlay.opaque=y</c> on <c>dir</c>.
/// <para>
/// Safety: names are normalised lexically; a leading <c>/</c> is dropped (as Docker does:
/// <c>/etc/passwd</c> lands at <c>target/etc/passwd</c>), <c>..</c> that climbs above the root is
/// refused. Every path is walked component by component from an fd on the target with
/// <c>O_NOFOLLOW</c> and created with <c>*at</c> calls, so a symlink in the layer (a parent, or the
/// entry itself) is never followed: writing through one is refused. Hardlinks must name an entry
/// this layer already wrote. Block/char devices need <see cref="LayerUnpackOptions.AllowDevices"/>.
/// <c>trusted.overlay.*</c> xattrs from the tar are dropped (they would steer overlayfs).
/// On any failure the target directory is deleted.
/// </para>
/// </summary>
public static class LayerUnpacker
{
    public const string WhiteoutPrefix = ".wh.";
    public const string OpaqueWhiteout = ".wh..wh..opq";
    public const string OpaqueXattr = "trusted.overlay.opaque";

    public static Task<LayerUnpackResult> UnpackAsync(Stream layer, string target, LayerUnpackOptions? options = null,
        CancellationToken cancellationToken = default) =>
        Task.Run(() => Unpack(layer, target, options, cancellationToken), cancellationToken);

    /// <summary>Unpacks <paramref name="layer"/> (plain, gzip or zstd) into <paramref name="target"/>, which must not exist or be empty.</summary>
    public static LayerUnpackResult Unpack(Stream layer, string target, LayerUnpackOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        options ??= new LayerUnpackOptions();
        target = Path.GetFullPath(target);
        if (Directory.Exists(target) && Directory.EnumerateFileSystemEntries(target).Any())
            throw new IOException($"unpack target '{target}' is not empty");
        Directory.CreateDirectory(target);
        try
        {
            using var root = RootHandle.Open(target);
            using var reader = new LayerTarReader(layer, options.Limits);
            var entries = ApplyAll(reader, new Applier(root, options, copy: null), cancellationToken);
            var (diffId, size) = reader.Finish();
            return new LayerUnpackResult(diffId, size, reader.Compression, entries);
        }
        catch
        {
            try
            {
                Directory.Delete(target, recursive: true);
            }
            catch (DirectoryNotFoundException) { }
            throw;
        }
    }

    /// <summary>
    /// <c>docker cp</c> into a container: extracts <paramref name="archive"/> (a tar, possibly compressed by
    /// <see cref="LayerTarReader"/>'s rules) into the directory <paramref name="containerDir"/> of <paramref name="root"/>,
    /// with the layer unpacker's fd discipline. Unlike a layer, an entry's parent directories are resolved inside the
    /// root with symlinks followed (as dockerd does in its chroot: <c>lib/x</c> lands in <c>/usr/lib/x</c> when
    /// <c>/lib</c> links there), missing ones are made 0755; the last component is never followed, an existing
    /// symlink there is replaced. No whiteouts; device nodes and FIFOs are skipped; hardlinks must name an earlier
    /// entry of the archive. Returns the number of entries.
    /// </summary>
    public static int CopyInto(Stream archive, RootHandle root, string containerDir, bool noOverwriteDirNonDir,
        LayerLimits? limits = null, CancellationToken cancellationToken = default)
    {
        var options = new LayerUnpackOptions { Limits = limits ?? new LayerLimits() };
        using var reader = new LayerTarReader(archive, options.Limits);
        return ApplyAll(reader, new Applier(root, options, new CopyTarget(containerDir, noOverwriteDirNonDir)), cancellationToken);
    }

    /// <summary>Every entry of <paramref name="reader"/> through <paramref name="applier"/>, then the directories' times and modes.</summary>
    private static int ApplyAll(LayerTarReader reader, Applier applier, CancellationToken cancellationToken)
    {
        var entries = 0;
        while (reader.Next(out var xattrs) is { } entry)
        {
            cancellationToken.ThrowIfCancellationRequested();
            applier.Apply(entry, xattrs);
            entries++;
        }
        applier.FinishDirectories();
        return entries;
    }

    /// <summary>Where a <c>docker cp</c> extraction goes: a directory of the root, resolved inside it.</summary>
    private sealed record CopyTarget(string ContainerDir, bool NoOverwriteDirNonDir);

    /// <summary>
    /// Splits a tar name into safe components: drops a leading '/', '.' and empty components,
    /// resolves '..' lexically, refuses climbing above the root. An empty list is the root itself.
    /// </summary>
    public static List<string> Normalize(string name, int maxLength)
    {
        if (name.Length > maxLength) throw new UnsafeLayerException(name, $"name longer than {maxLength} characters");
        if (name.Contains('\0')) throw new UnsafeLayerException(name, "name contains NUL");
        var parts = new List<string>();
        foreach (var c in name.Split('/'))
        {
            if (c is "" or ".") continue;
            if (c == "..")
            {
                if (parts.Count == 0) throw new UnsafeLayerException(name, "path climbs out of the layer root ('..')");
                parts.RemoveAt(parts.Count - 1);
                continue;
            }
            if (Encoding.UTF8.GetByteCount(c) > 255) throw new UnsafeLayerException(name, "path component longer than 255 bytes");
            parts.Add(c);
        }
        return parts;
    }

    private sealed class Applier
    {
        private readonly RootHandle _root;
        private readonly LayerUnpackOptions _options;
        private readonly CopyTarget? _copy;
        private readonly HashSet<string> _written = new(StringComparer.Ordinal);
        private readonly List<(List<string> Parts, Timespec[] Times)> _dirTimes = [];

        /// <param name="copy">null: a layer into an empty directory; else a docker cp into a live tree.</param>
        public Applier(RootHandle root, LayerUnpackOptions options, CopyTarget? copy)
        {
            _root = root;
            _options = options;
            _copy = copy;
        }

        private int RootFd => _root.Fd;

        public void Apply(TarEntry entry, IReadOnlyDictionary<string, byte[]> xattrs)
        {
            var name = entry.Name;
            var parts = Normalize(name, _options.Limits.MaxPathLength);
            if (parts.Count == 0)
            {
                if (_copy is not null) return; // "./" of a docker cp archive: the target directory exists already
                // "./": the layer's root directory; only its metadata applies.
                if (entry.EntryType != TarEntryType.Directory) throw new UnsafeLayerException(name, "the layer root must be a directory");
                var self = openat(RootFd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0); // the root handle is O_PATH
                if (self < 0) throw Error("open", name, Errno);
                try
                {
                    SetMetadata(self, entry, xattrs, name);
                }
                finally
                {
                    close(self);
                }
                _dirTimes.Add((parts, Times(entry)));
                return;
            }
            var leaf = parts[^1];
            var parentParts = parts[..^1];

            if (_copy is null && leaf.StartsWith(WhiteoutPrefix, StringComparison.Ordinal))
            {
                ApplyWhiteout(entry, parentParts, leaf, name);
                return;
            }

            if (_copy is not null && entry.EntryType is TarEntryType.CharacterDevice or TarEntryType.BlockDevice or TarEntryType.Fifo)
                return; // docker cp does not make device nodes or FIFOs here
            var parent = OpenDir(parentParts, create: true, name);
            try
            {
                if (_copy is { NoOverwriteDirNonDir: true }) RefuseDirNonDirSwap(parent, leaf, entry, name);
                switch (entry.EntryType)
                {
                    case TarEntryType.Directory:
                        MakeDirectory(parent, leaf, entry, xattrs, name);
                        _dirTimes.Add((parts, Times(entry)));
                        break;
                    case TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile:
                        RemoveExisting(parent, leaf, name, keepDirectory: false);
                        WriteFile(parent, leaf, entry, xattrs, name);
                        break;
                    case TarEntryType.SymbolicLink:
                        if (string.IsNullOrEmpty(entry.LinkName)) throw new UnsafeLayerException(name, "symlink without a target");
                        if (entry.LinkName.Length > _options.Limits.MaxPathLength || entry.LinkName.Contains('\0'))
                            throw new UnsafeLayerException(name, "symlink target too long or contains NUL");
                        RemoveExisting(parent, leaf, name, keepDirectory: false);
                        Check(symlinkat(entry.LinkName, parent, leaf), "symlink", name);
                        SetLinkMetadata(parent, leaf, entry, xattrs, name);
                        break;
                    case TarEntryType.HardLink:
                        MakeHardLink(parent, leaf, entry, name);
                        break;
                    case TarEntryType.CharacterDevice or TarEntryType.BlockDevice:
                        if (!_options.AllowDevices) throw new UnsafeLayerException(name, "device nodes are not allowed in this layer");
                        RemoveExisting(parent, leaf, name, keepDirectory: false);
                        var kind = entry.EntryType == TarEntryType.CharacterDevice ? S_IFCHR : S_IFBLK;
                        var pe = (PosixTarEntry)entry;
                        Check(mknodat(parent, leaf, kind | 0600, MakeDev((uint)pe.DeviceMajor, (uint)pe.DeviceMinor)), "mknod", name);
                        SetNodeMetadata(parent, leaf, entry, xattrs, name);
                        break;
                    case TarEntryType.Fifo:
                        RemoveExisting(parent, leaf, name, keepDirectory: false);
                        Check(mknodat(parent, leaf, S_IFIFO | 0600, 0), "mkfifo", name);
                        SetNodeMetadata(parent, leaf, entry, xattrs, name);
                        break;
                    default:
                        throw new InvalidDataException($"unsupported tar entry type {entry.EntryType} for '{name}'");
                }
                _written.Add(string.Join('/', parts));
            }
            finally
            {
                close(parent);
            }
        }

        private void ApplyWhiteout(TarEntry entry, List<string> parentParts, string leaf, string name)
        {
            if (leaf == OpaqueWhiteout)
            {
                var path = OpenDir(parentParts, create: true, name);
                var dir = openat(path, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
                close(path);
                if (dir < 0) throw Error("open", name, Errno);
                try
                {
                    SetXattr(dir, OpaqueXattr, "y"u8.ToArray(), name);
                }
                finally
                {
                    close(dir);
                }
                return;
            }
            if (leaf.StartsWith(WhiteoutPrefix + WhiteoutPrefix, StringComparison.Ordinal)) return; // aufs metadata (.wh..wh.plnk …): skipped, as Docker does
            var hidden = leaf[WhiteoutPrefix.Length..];
            if (hidden is "" or "." or "..") throw new UnsafeLayerException(name, "whiteout names nothing");
            var parent = OpenDir(parentParts, create: true, name);
            try
            {
                RemoveExisting(parent, hidden, name, keepDirectory: false);
                Check(mknodat(parent, hidden, S_IFCHR, 0), "mknod whiteout", name);
                Check(fchownat(parent, hidden, entry.Uid, entry.Gid, AT_SYMLINK_NOFOLLOW), "lchown", name);
            }
            finally
            {
                close(parent);
            }
        }

        /// <summary>docker cp's <c>noOverwriteDirNonDir</c>: a directory is not replaced by a non-directory, nor the other way.</summary>
        private static void RefuseDirNonDirSwap(int parent, string leaf, TarEntry entry, string name)
        {
            if (!FdTree.TryStat(parent, leaf, out var st)) return;
            var existingIsDir = st.Type == S_IFDIR;
            var entryIsDir = entry.EntryType == TarEntryType.Directory;
            if (existingIsDir != entryIsDir)
                throw new InvalidDataException($"cannot overwrite {(existingIsDir ? "directory" : "non-directory")} \"{leaf}\" with {(entryIsDir ? "directory" : "non-directory")} \"{name}\"");
        }

        /// <summary>
        /// A directory of the docker cp target, resolved inside the root (symlinks followed, confined by the kernel);
        /// missing components are made 0755 with <c>mkdirat</c> in their parent's fd.
        /// </summary>
        private int OpenCopyDir(List<string> parts, bool create, string entryName)
        {
            var path = _copy!.ContainerDir.TrimEnd('/') + "/" + string.Join('/', parts);
            var fd = openat2(RootFd, path.TrimStart('/') is { Length: > 0 } p ? p : ".", O_PATH | O_DIRECTORY | O_CLOEXEC,
                RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
            if (fd >= 0) return fd;
            var e = Errno;
            if (e != ENOENT || !create || parts.Count == 0) throw Error("open", entryName, e);
            var parent = OpenCopyDir(parts[..^1], create, entryName);
            try
            {
                if (mkdirat(parent, parts[^1], 0755) < 0 && Errno != EEXIST) throw Error("mkdir", entryName, Errno);
                fd = openat(parent, parts[^1], O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
                if (fd < 0) throw new UnsafeLayerException(entryName, $"cannot open the directory '{parts[^1]}' it made: {Describe(Errno)}");
                return fd;
            }
            finally
            {
                close(parent);
            }
        }

        /// <summary>Opens the directory at <paramref name="parts"/> without following any symlink; missing ones are created 0755.</summary>
        private int OpenDir(List<string> parts, bool create, string entryName)
        {
            if (_copy is not null) return OpenCopyDir(parts, create, entryName);
            var fd = openat(RootFd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
            if (fd < 0) throw Error("open", _root.Path, Errno);
            try
            {
                foreach (var part in parts)
                {
                    var next = openat(fd, part, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
                    if (next < 0 && Errno == ENOENT && create)
                    {
                        if (mkdirat(fd, part, 0755) < 0 && Errno != EEXIST) throw Error("mkdir", entryName, Errno);
                        next = openat(fd, part, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
                    }
                    if (next < 0)
                    {
                        var e = Errno;
                        if (e is ENOTDIR or ELOOP) throw new UnsafeLayerException(entryName, $"parent '{part}' is a symlink or not a directory");
                        throw Error("open", entryName, e);
                    }
                    close(fd);
                    fd = next;
                }
                return fd;
            }
            catch
            {
                close(fd);
                throw;
            }
        }

        private static bool TryStat(int dir, string leaf, out Statx st)
        {
            if (statx(dir, leaf, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, out st) == 0) return true;
            if (Errno == ENOENT) return false;
            throw Error("statx", leaf, Errno);
        }

        /// <summary>A later entry replaces an earlier one of the same name (a directory only by a directory).</summary>
        private static void RemoveExisting(int parent, string leaf, string name, bool keepDirectory)
        {
            if (!TryStat(parent, leaf, out var st)) return;
            if (st.Type == S_IFDIR)
            {
                if (keepDirectory) return;
                if (unlinkat(parent, leaf, AT_REMOVEDIR) == 0) return;
                // Non-empty: walk it by fds (a path-based recursive delete could be led out by a swapped symlink).
                FdTree.RemoveTree(parent, leaf);
                return;
            }
            Check(unlinkat(parent, leaf, 0), "unlink", name);
        }

        private void MakeDirectory(int parent, string leaf, TarEntry entry, IReadOnlyDictionary<string, byte[]> xattrs, string name)
        {
            RemoveExisting(parent, leaf, name, keepDirectory: true);
            if (mkdirat(parent, leaf, 0700) < 0 && Errno != EEXIST) throw Error("mkdir", name, Errno);
            var fd = openat(parent, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
            if (fd < 0) throw new UnsafeLayerException(name, $"cannot open the directory without following links: {Describe(Errno)}");
            try
            {
                SetMetadata(fd, entry, xattrs, name);
            }
            finally
            {
                close(fd);
            }
        }

        private void WriteFile(int parent, string leaf, TarEntry entry, IReadOnlyDictionary<string, byte[]> xattrs, string name)
        {
            var fd = openat(parent, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
            if (fd < 0) throw Error("create", name, Errno);
            try
            {
                if (entry.DataStream is { } data)
                {
                    using var file = new FileStream(new SafeFileHandle(fd, ownsHandle: false), FileAccess.Write, 1 << 16);
                    data.CopyTo(file);
                    file.Flush();
                }
                SetMetadata(fd, entry, xattrs, name);
            }
            finally
            {
                close(fd);
            }
            Check(utimensat(parent, leaf, Times(entry), AT_SYMLINK_NOFOLLOW), "utimensat", name);
        }

        private void MakeHardLink(int parent, string leaf, TarEntry entry, string name)
        {
            var targetParts = Normalize(entry.LinkName ?? "", _options.Limits.MaxPathLength);
            var key = string.Join('/', targetParts);
            if (targetParts.Count == 0 || !_written.Contains(key))
                throw new UnsafeLayerException(name, $"hardlink to '{entry.LinkName}', which is not an earlier entry of this layer");
            if (key == string.Join('/', Normalize(name, _options.Limits.MaxPathLength)))
                throw new UnsafeLayerException(name, "hardlink to itself");
            var srcParent = OpenDir(targetParts[..^1], create: false, name);
            try
            {
                if (!TryStat(srcParent, targetParts[^1], out var st))
                    throw new UnsafeLayerException(name, $"hardlink target '{entry.LinkName}' no longer exists");
                if (st.Type == S_IFDIR) throw new UnsafeLayerException(name, "hardlink to a directory");
                RemoveExisting(parent, leaf, name, keepDirectory: false);
                Check(linkat(srcParent, targetParts[^1], parent, leaf, 0), "link", name);
            }
            finally
            {
                close(srcParent);
            }
        }

        /// <summary>Owner, then mode (chown clears setuid), then xattrs, on an open file or directory.</summary>
        private static void SetMetadata(int fd, TarEntry entry, IReadOnlyDictionary<string, byte[]> xattrs, string name)
        {
            Check(fchown(fd, entry.Uid, entry.Gid), "chown", name);
            Check(fchmod(fd, (uint)entry.Mode & 0xFFF), "chmod", name);
            foreach (var (key, value) in xattrs)
                if (!key.StartsWith("trusted.overlay.", StringComparison.Ordinal))
                    SetXattr(fd, key, value, name);
        }

        private static void SetNodeMetadata(int parent, string leaf, TarEntry entry, IReadOnlyDictionary<string, byte[]> xattrs, string name)
        {
            // Device nodes and FIFOs cannot be opened safely (a FIFO blocks): path-relative calls only.
            Check(fchownat(parent, leaf, entry.Uid, entry.Gid, AT_SYMLINK_NOFOLLOW), "lchown", name);
            var fd = openat(parent, leaf, O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
            if (fd < 0) throw Error("open", name, Errno);
            try
            {
                Check(Native.chmod($"/proc/self/fd/{fd}", (uint)entry.Mode & 0xFFF), "chmod", name);
            }
            finally
            {
                close(fd);
            }
            SetLinkXattrs(parent, leaf, xattrs, name);
            Check(utimensat(parent, leaf, Times(entry), AT_SYMLINK_NOFOLLOW), "utimensat", name);
        }

        private static void SetLinkMetadata(int parent, string leaf, TarEntry entry, IReadOnlyDictionary<string, byte[]> xattrs, string name)
        {
            Check(fchownat(parent, leaf, entry.Uid, entry.Gid, AT_SYMLINK_NOFOLLOW), "lchown", name);
            SetLinkXattrs(parent, leaf, xattrs, name);
            Check(utimensat(parent, leaf, Times(entry), AT_SYMLINK_NOFOLLOW), "utimensat", name);
        }

        private static void SetLinkXattrs(int parent, string leaf, IReadOnlyDictionary<string, byte[]> xattrs, string name)
        {
            foreach (var (key, value) in xattrs)
            {
                if (key.StartsWith("trusted.overlay.", StringComparison.Ordinal)) continue;
                // The parent is reached through its fd's /proc link; lsetxattr does not follow the leaf.
                if (lsetxattr($"/proc/self/fd/{parent}/{leaf}", key, value, (nuint)value.Length, 0) < 0)
                {
                    var e = Errno;
                    if (e is EPERM or ENOTSUP) continue; // user.* on symlinks/devices: the kernel refuses, Docker ignores too
                    throw Error($"lsetxattr {key}", name, e);
                }
            }
        }

        private static void SetXattr(int fd, string key, byte[] value, string name)
        {
            if (fsetxattr(fd, key, value, (nuint)value.Length, 0) < 0)
                throw Error($"setxattr {key}", name, Errno);
        }

        private static Timespec[] Times(TarEntry entry)
        {
            var t = entry.ModificationTime;
            var ticks = t.UtcTicks - DateTime.UnixEpoch.Ticks;
            var mtime = new Timespec
            {
                Seconds = Math.DivRem(ticks, TimeSpan.TicksPerSecond, out var rem) - (rem < 0 ? 1 : 0),
                Nanoseconds = ((rem % TimeSpan.TicksPerSecond + TimeSpan.TicksPerSecond) % TimeSpan.TicksPerSecond) * 100,
            };
            return [mtime, mtime];
        }

        /// <summary>Directory mtimes last: creating children changes them.</summary>
        public void FinishDirectories()
        {
            foreach (var (parts, times) in _dirTimes)
            {
                if (parts.Count == 0)
                {
                    Check(utimensat(AT_FDCWD, _root.Path, times, AT_SYMLINK_NOFOLLOW), "utimensat", _root.Path);
                    continue;
                }
                int parent;
                try
                {
                    parent = OpenDir(parts[..^1], create: false, string.Join('/', parts));
                }
                catch (IOException)
                {
                    continue; // removed by a later entry
                }
                try
                {
                    if (TryStat(parent, parts[^1], out var st) && st.Type == S_IFDIR)
                        Check(utimensat(parent, parts[^1], times, AT_SYMLINK_NOFOLLOW), "utimensat", string.Join('/', parts));
                }
                finally
                {
                    close(parent);
                }
            }
        }
    }
}
