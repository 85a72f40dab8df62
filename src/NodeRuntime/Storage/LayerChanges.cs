using static Flotilla.NodeRuntime.Storage.Native;

namespace Flotilla.NodeRuntime.Storage;

/// <summary>Docker's change kinds (<c>docker diff</c>: C, A, D).</summary>
public enum ChangeKind { Modified = 0, Added = 1, Deleted = 2 }

public sealed record LayerChange(string Path, ChangeKind Kind);

/// <summary>
/// <c>docker diff</c>: what a container's overlay upper dir changed against its image's layers. A 0:0 character
/// device is a deletion; anything else in the upper dir is an addition unless the path exists in the image, then a
/// modification (a directory that merely holds changes counts as modified, as Docker reports it). Children of an
/// opaque directory are additions. Paths come in ordinal order, a directory before its children.
/// </summary>
public static class LayerChanges
{
    /// <param name="upperDir">The container's upper dir.</param>
    /// <param name="lowerDirsTopFirst">The image's unpacked layers, topmost first (overlay's lowerdir order).</param>
    public static IReadOnlyList<LayerChange> List(string upperDir, IReadOnlyList<string> lowerDirsTopFirst, CancellationToken cancellationToken = default)
    {
        var changes = new List<LayerChange>();
        Walk(Path.GetFullPath(upperDir), "/", lowerDirsTopFirst, inOpaque: false, changes, cancellationToken);
        return changes;
    }

    private static void Walk(string dir, string rel, IReadOnlyList<string> lowers, bool inOpaque, List<LayerChange> changes, CancellationToken ct)
    {
        var names = Directory.EnumerateFileSystemEntries(dir).Select(Path.GetFileName).Select(n => n!).ToList();
        names.Sort(StringComparer.Ordinal);
        foreach (var name in names)
        {
            ct.ThrowIfCancellationRequested();
            var path = Path.Combine(dir, name);
            var containerPath = rel + name;
            if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, out var st) < 0) continue; // vanished meanwhile
            if (st.Type == S_IFCHR && st.RdevMajor == 0 && st.RdevMinor == 0)
            {
                changes.Add(new LayerChange(containerPath, ChangeKind.Deleted));
                continue;
            }
            var inImage = !inOpaque && ExistsInImage(lowers, containerPath);
            changes.Add(new LayerChange(containerPath, inImage ? ChangeKind.Modified : ChangeKind.Added));
            if (st.Type == S_IFDIR)
            {
                var opaque = ListXattrs(path).TryGetValue(LayerUnpacker.OpaqueXattr, out var o) && o is [(byte)'y'];
                Walk(path, containerPath + "/", lowers, inOpaque || opaque || !inImage, changes, ct);
            }
        }
    }

    /// <summary>
    /// What dockerd's init layer holds (daemon/initlayer): mount points and files the runtime puts in every container.
    /// They are not the container's changes, so <c>docker diff</c> does not list them.
    /// </summary>
    private static readonly HashSet<string> InitLayerPaths = new(StringComparer.Ordinal)
    {
        "/dev", "/dev/pts", "/dev/shm", "/dev/console", "/dev/mqueue", "/proc", "/sys", "/.dockerenv",
        "/etc/resolv.conf", "/etc/hosts", "/etc/hostname", "/etc/mtab",
    };

    /// <summary>
    /// The changes without the runtime's own mount points, as dockerd reports them against its init layer: those paths,
    /// what lies beneath <c>/dev</c>, <c>/proc</c> and <c>/sys</c>, and a directory (<c>/etc</c>) listed only because it
    /// holds them.
    /// </summary>
    public static IReadOnlyList<LayerChange> WithoutInitLayer(IReadOnlyList<LayerChange> changes)
    {
        static bool Hidden(string path) =>
            InitLayerPaths.Contains(path) || path.StartsWith("/dev/", StringComparison.Ordinal) ||
            path.StartsWith("/proc/", StringComparison.Ordinal) || path.StartsWith("/sys/", StringComparison.Ordinal);
        var kept = changes.Where(c => !Hidden(c.Path)).ToList();
        var holders = InitLayerPaths.Select(p => p[..p.LastIndexOf('/')]).Where(p => p.Length > 0).ToHashSet(StringComparer.Ordinal);
        return kept.Where(c => c.Kind == ChangeKind.Deleted || !holders.Contains(c.Path) ||
            kept.Any(other => other.Path.StartsWith(c.Path + "/", StringComparison.Ordinal))).ToList();
    }

    /// <summary>The topmost layer that has the path decides: a whiteout there hides it.</summary>
    private static bool ExistsInImage(IReadOnlyList<string> lowersTopFirst, string containerPath)
    {
        foreach (var lower in lowersTopFirst)
        {
            var path = lower.TrimEnd('/') + containerPath;
            if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, out var st) < 0) continue;
            return !(st.Type == S_IFCHR && st.RdevMajor == 0 && st.RdevMinor == 0);
        }
        return false;
    }
}
