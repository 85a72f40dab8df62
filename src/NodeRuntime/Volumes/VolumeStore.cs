namespace Flotilla.NodeRuntime.Volumes;

/// <summary>Local volumes, as Docker's "local" driver: a directory <c>&lt;data&gt;/volumes/&lt;name&gt;/_data</c> per volume.</summary>
public sealed class VolumeStore(string dataRoot)
{
    private readonly string _root = Path.Combine(dataRoot, "volumes");

    public string MountpointOf(string name) => Path.Combine(_root, name, "_data");

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
