namespace Flotilla.NodeRuntime.Oci;

/// <summary>Path resolution scoped to a container root filesystem.</summary>
public static class RootfsPaths
{
    private const int MaxSymlinks = 40;

    /// <summary>
    /// Resolves <paramref name="containerPath"/> inside <paramref name="rootfs"/> the way the container would see
    /// it: symlinks (absolute or relative) and ".." are evaluated with <paramref name="rootfs"/> as "/", so the
    /// result never leaves it. Components that do not exist are appended as they are (like securejoin).
    /// </summary>
    public static string SecureJoin(string rootfs, string containerPath)
    {
        var root = Path.GetFullPath(rootfs).TrimEnd('/');
        var pending = new Stack<string>(Split(containerPath).Reverse());
        var resolved = new List<string>();
        var links = 0;
        while (pending.Count > 0)
        {
            var part = pending.Pop();
            if (part == ".") continue;
            if (part == "..")
            {
                if (resolved.Count > 0) resolved.RemoveAt(resolved.Count - 1);
                continue;
            }
            var candidate = root + "/" + string.Join('/', resolved.Append(part));
            // LinkTarget reads the link itself (lstat + readlink), null for anything that is not a symlink.
            if (new FileInfo(candidate).LinkTarget is { } target)
            {
                if (++links > MaxSymlinks) throw new IOException($"too many levels of symbolic links resolving {containerPath}");
                if (target.StartsWith('/')) resolved.Clear();
                foreach (var t in Split(target).Reverse()) pending.Push(t);
                continue;
            }
            resolved.Add(part);
        }
        return resolved.Count == 0 ? root : root + "/" + string.Join('/', resolved);
    }

    private static string[] Split(string path) => path.Split('/', StringSplitOptions.RemoveEmptyEntries);
}
