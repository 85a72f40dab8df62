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
