using System.Runtime.InteropServices;
using System.Text;

namespace Flotilla.NodeRuntime.Storage;

/// <summary>
/// The libc calls the layer code needs, all fd-relative (<c>*at</c>) so that no path is ever
/// resolved through a symlink an untrusted layer planted. Linux only.
/// </summary>
internal static partial class Native
{
    public const int AT_FDCWD = -100;
    public const int AT_SYMLINK_NOFOLLOW = 0x100;
    public const int AT_REMOVEDIR = 0x200;
    public const int AT_EMPTY_PATH = 0x1000;

    public const int O_RDONLY = 0;
    public const int O_WRONLY = 1;
    public const int O_CREAT = 0x40;
    public const int O_EXCL = 0x80;
    public const int O_TRUNC = 0x200;
    public const int O_DIRECTORY = 0x10000;
    public const int O_NOFOLLOW = 0x20000;
    public const int O_CLOEXEC = 0x80000;
    public const int O_PATH = 0x200000;
    public const int O_NONBLOCK = 0x800;

    /// <summary>openat2(2) <c>resolve</c> flags (linux/openat2.h).</summary>
    public const ulong RESOLVE_NO_MAGICLINKS = 0x02;
    public const ulong RESOLVE_IN_ROOT = 0x10;

    /// <summary>The syscall number of openat2, the same in the unified table of x86-64 and arm64.</summary>
    private const long SYS_openat2 = 437;

    public const uint S_IFMT = 0xF000;
    public const uint S_IFSOCK = 0xC000;
    public const uint S_IFLNK = 0xA000;
    public const uint S_IFREG = 0x8000;
    public const uint S_IFBLK = 0x6000;
    public const uint S_IFDIR = 0x4000;
    public const uint S_IFCHR = 0x2000;
    public const uint S_IFIFO = 0x1000;

    public const int ENOENT = 2;
    public const int EEXIST = 17;
    public const int ENOTDIR = 20;
    public const int ELOOP = 40;
    public const int EPERM = 1;
    public const int ENODATA = 61;
    public const int ENOTSUP = 95;
    public const int ERANGE = 34;
    public const int EINVAL = 22;
    public const int EBUSY = 16;

    public const ulong MS_RDONLY = 1;
    public const ulong MS_REMOUNT = 32;
    public const ulong MS_BIND = 4096;
    public const int MNT_DETACH = 2;

    public const uint STATX_BASIC_STATS = 0x7ff;

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int openat(int dirfd, string path, int flags, uint mode);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int close(int fd);

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial long syscall_openat2(long number, int dirfd, string path, ref OpenHow how, nuint size);

    /// <summary>openat2(2) (Linux ≥ 5.6; glibc has no wrapper).</summary>
    public static int openat2(int dirfd, string path, int flags, ulong resolve)
    {
        var how = new OpenHow { Flags = (ulong)(uint)flags, Mode = 0, Resolve = resolve };
        return (int)syscall_openat2(SYS_openat2, dirfd, path, ref how, (nuint)Marshal.SizeOf<OpenHow>());
    }

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint readlinkat(int dirfd, string path, byte[] buffer, nuint size);

    /// <summary>The target of the symlink <paramref name="leaf"/> in <paramref name="dir"/>.</summary>
    public static string ReadLink(int dir, string leaf)
    {
        var buffer = new byte[4097];
        var n = readlinkat(dir, leaf, buffer, (nuint)buffer.Length);
        if (n < 0) throw Error("readlink", leaf, Errno);
        return Encoding.UTF8.GetString(buffer, 0, (int)n);
    }

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int mkdirat(int dirfd, string path, uint mode);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int mknodat(int dirfd, string path, uint mode, ulong dev);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int symlinkat(string target, int newdirfd, string linkpath);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int linkat(int olddirfd, string oldpath, int newdirfd, string newpath, int flags);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int unlinkat(int dirfd, string path, int flags);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int fchownat(int dirfd, string path, int uid, int gid, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int fchmod(int fd, uint mode);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int chmod(string path, uint mode);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int fchown(int fd, int uid, int gid);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int utimensat(int dirfd, string path, Timespec[] times, int flags);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int statx(int dirfd, string path, int flags, uint mask, out Statx buf);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int fsetxattr(int fd, string name, byte[] value, nuint size, int flags);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int lsetxattr(string path, string name, byte[] value, nuint size, int flags);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint llistxattr(string path, byte[]? list, nuint size);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint lgetxattr(string path, string name, byte[]? value, nuint size);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int mount(string? source, string target, string? fstype, ulong flags, string? data);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int umount2(string target, int flags);

    [StructLayout(LayoutKind.Sequential)]
    public struct OpenHow
    {
        public ulong Flags;
        public ulong Mode;
        public ulong Resolve;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct StatxTimestamp
    {
        public long Seconds;
        public uint Nanoseconds;
        public int Reserved;
    }

    /// <summary>struct statx: the same layout on every architecture, unlike struct stat.</summary>
    [StructLayout(LayoutKind.Sequential, Size = 256)]
    public struct Statx
    {
        public uint Mask;
        public uint BlockSize;
        public ulong Attributes;
        public uint Nlink;
        public uint Uid;
        public uint Gid;
        public ushort Mode;
        public ushort Spare0;
        public ulong Ino;
        public ulong Size;
        public ulong Blocks;
        public ulong AttributesMask;
        public StatxTimestamp Atime;
        public StatxTimestamp Btime;
        public StatxTimestamp Ctime;
        public StatxTimestamp Mtime;
        public uint RdevMajor;
        public uint RdevMinor;
        public uint DevMajor;
        public uint DevMinor;

        public readonly uint Type => Mode & S_IFMT;
        public readonly uint Permissions => Mode & 0xFFFu;
    }

    /// <summary>glibc's makedev.</summary>
    public static ulong MakeDev(uint major, uint minor) =>
        (minor & 0xffUL) | ((major & 0xfffUL) << 8) | ((ulong)(minor & ~0xffu) << 12) | ((ulong)(major & ~0xfffu) << 32);

    public static int Errno => Marshal.GetLastPInvokeError();

    public static string Describe(int errno) => $"{Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})";

    public static IOException Error(string what, string path, int errno) =>
        new($"{what} '{path}': {Describe(errno)}", errno);

    public static void Check(int rc, string what, string path)
    {
        if (rc < 0) throw Error(what, path, Errno);
    }

    /// <summary>Lists the extended attributes of a path without following a final symlink.</summary>
    public static SortedDictionary<string, byte[]> ListXattrs(string path)
    {
        var result = new SortedDictionary<string, byte[]>(StringComparer.Ordinal);
        var size = llistxattr(path, null, 0);
        if (size < 0)
        {
            var e = Errno;
            if (e is ENOTSUP) return result;
            throw Error("llistxattr", path, e);
        }
        if (size == 0) return result;
        var list = new byte[size];
        size = llistxattr(path, list, (nuint)list.Length);
        if (size < 0) throw Error("llistxattr", path, Errno);
        foreach (var name in Encoding.UTF8.GetString(list, 0, (int)size).Split('\0', StringSplitOptions.RemoveEmptyEntries))
        {
            var len = lgetxattr(path, name, null, 0);
            if (len < 0)
            {
                if (Errno == ENODATA) continue;
                throw Error($"lgetxattr {name}", path, Errno);
            }
            var value = new byte[len];
            if (len > 0)
            {
                len = lgetxattr(path, name, value, (nuint)value.Length);
                if (len < 0) throw Error($"lgetxattr {name}", path, Errno);
                if (len != value.Length) value = value[..(int)len];
            }
            result[name] = value;
        }
        return result;
    }
}
