using static Flotilla.NodeRuntime.Storage.Native;

namespace Flotilla.NodeRuntime.Storage;

/// <summary>
/// A directory fd that stands for "/" of a tree someone else may be changing while we work in it (a running
/// container's rootfs). Paths are resolved by the kernel with <c>openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)</c>:
/// <c>..</c>, absolute and relative symlinks stay inside the root, <c>/proc/…</c> magic links are refused, and a
/// directory swapped for a symlink between two calls can only lead somewhere else inside the root. Everything after
/// the lookup works on the fds it returned (<c>*at</c> calls), never on a path string again. Linux ≥ 5.6.
/// </summary>
public sealed class RootHandle : IDisposable
{
    private int _fd;

    private RootHandle(int fd, string path)
    {
        _fd = fd;
        Path = path;
    }

    /// <summary>The root's host path, for messages only.</summary>
    public string Path { get; }

    internal int Fd => _fd >= 0 ? _fd : throw new ObjectDisposedException(nameof(RootHandle));

    /// <summary>Opens the root itself: a path the engine owns (e.g. <c>&lt;data&gt;/ctr/&lt;id&gt;/rootfs</c>), not followed if it is a symlink.</summary>
    public static RootHandle Open(string path)
    {
        var fd = openat(AT_FDCWD, path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
        if (fd < 0) throw Error("open", path, Errno);
        return new RootHandle(fd, path);
    }

    /// <summary>Opens <paramref name="path"/> inside the root (symlinks followed, confined); the caller closes the fd.</summary>
    internal int OpenInRoot(string path, int flags)
    {
        var relative = path.TrimStart('/');
        var fd = openat2(Fd, relative.Length == 0 ? "." : relative, flags | O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
        if (fd < 0) throw Error("open", path, Errno);
        return fd;
    }

    /// <summary>
    /// The directory that holds the last component of <paramref name="path"/> (resolved inside the root) and that
    /// component, not followed. The root itself, and paths ending in <c>.</c> or <c>..</c>, come back as
    /// (the directory they name, <c>"."</c>). The caller closes the fd.
    /// </summary>
    internal (int Dir, string Leaf) OpenParent(string path)
    {
        var trimmed = path.TrimEnd('/');
        var slash = trimmed.LastIndexOf('/');
        var last = trimmed[(slash + 1)..];
        if (trimmed.Length == 0 || last is "." or "..")
            return (OpenInRoot(trimmed, O_PATH | O_DIRECTORY), ".");
        var dir = OpenInRoot(slash <= 0 ? "/" : trimmed[..slash], O_PATH | O_DIRECTORY);
        return (dir, last);
    }

    public void Dispose()
    {
        var fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0) close(fd);
    }
}

/// <summary>fd-relative helpers shared by the extractor and the archiver.</summary>
internal static class FdTree
{
    /// <summary>The names in an open directory. Listed through the fd's own /proc link, which names the opened directory, not a path.</summary>
    public static List<string> Names(int dirFd)
    {
        var names = new List<string>();
        foreach (var entry in Directory.EnumerateFileSystemEntries($"/proc/self/fd/{dirFd}"))
            names.Add(System.IO.Path.GetFileName(entry));
        names.Sort(StringComparer.Ordinal);
        return names;
    }

    public static bool TryStat(int dir, string leaf, out Statx st)
    {
        if (statx(dir, leaf, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, out st) == 0) return true;
        if (Errno is ENOENT or ENOTDIR) return false;
        throw Error("statx", leaf, Errno);
    }

    /// <summary>Removes <paramref name="leaf"/> and everything under it, walking by fds: a subdirectory swapped for a symlink meanwhile is unlinked, never followed.</summary>
    public static void RemoveTree(int parent, string leaf)
    {
        var fd = openat(parent, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
        if (fd < 0)
        {
            var e = Errno;
            if (e == ENOENT) return;
            if (e is ENOTDIR or ELOOP)
            {
                if (unlinkat(parent, leaf, 0) < 0 && Errno != ENOENT) throw Error("unlink", leaf, Errno);
                return;
            }
            throw Error("open", leaf, e);
        }
        try
        {
            foreach (var name in Names(fd))
            {
                if (TryStat(fd, name, out var st) && st.Type == S_IFDIR) RemoveTree(fd, name);
                else if (unlinkat(fd, name, 0) < 0 && Errno != ENOENT) throw Error("unlink", name, Errno);
            }
        }
        finally
        {
            close(fd);
        }
        if (unlinkat(parent, leaf, AT_REMOVEDIR) < 0 && Errno != ENOENT) throw Error("rmdir", leaf, Errno);
    }
}
