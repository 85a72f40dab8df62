namespace Flotilla.NodeRuntime.Volumes;

/// <summary>Local volumes, as Docker's "local" driver: a directory <c>&lt;data&gt;/volumes/&lt;name&gt;/_data</c> per volume.
/// A store is a node's own: a gateway has none, and the cluster's record of which node holds a volume is
/// <c>Cluster/Volumes/VolumeRegistry</c>.</summary>
public sealed class VolumeStore(string dataRoot)
{
    private readonly string _root = RootOf(dataRoot);

    /// <summary>The directory a node's volumes live in (registered in <c>NodeJoined.VolumeRoot</c>).</summary>
    public static string RootOf(string dataRoot) => Path.Combine(dataRoot, "volumes");

    /// <summary>A volume's data directory under a node's <paramref name="volumeRoot"/>.</summary>
    public static string MountpointUnder(string volumeRoot, string name) => Path.Combine(volumeRoot, name, "_data");

    public string MountpointOf(string name) => MountpointUnder(_root, name);

    public bool Exists(string name) => Directory.Exists(MountpointOf(name));

    /// <summary>Creates the volume if it does not exist; returns its mountpoint.</summary>
    public string Ensure(string name)
    {
        Host.DataRootPermissions.EnsurePrivate(_root);
        var path = MountpointOf(name);
        Directory.CreateDirectory(path);
        return path;
    }

    public IReadOnlyList<(string Name, DateTimeOffset Created)> List() =>
        Directory.Exists(_root)
            ? Directory.EnumerateDirectories(_root).Where(d => Directory.Exists(Path.Combine(d, "_data")))
                .Select(d => (Path.GetFileName(d), new DateTimeOffset(Directory.GetCreationTimeUtc(d), TimeSpan.Zero))).ToList()
            : [];

    public bool Remove(string name)
    {
        var dir = Path.Combine(_root, name);
        if (!Directory.Exists(dir)) return false;
        Directory.Delete(dir, recursive: true);
        return true;
    }
}
