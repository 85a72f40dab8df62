namespace Flotilla.NodeRuntime.Host;

/// <summary>
/// Who may read the data root. It holds every container's environment (bundles' <c>config.json</c>), writable
/// layers, image content and the registry's private blobs, so only root reads it: the root itself is 0711
/// (others may pass through to a named path, which the embedded PostgreSQL's service user needs for
/// <c>&lt;data&gt;/postgres</c> and clients need for a socket placed there) and everything Flotilla keeps in it is
/// 0700. Containers do not need more: runc and conmon run as root, overlay checks the mounter's rights on the
/// layers, and a container's processes see its rootfs from inside after <c>pivot_root</c>, never through these paths.
/// </summary>
public static class DataRootPermissions
{
    /// <summary>rwx--x--x: traversable to known names, not listable or readable.</summary>
    public const UnixFileMode Root = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
        | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;

    /// <summary>rwx------.</summary>
    public const UnixFileMode PrivateDirectory = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    /// <summary>rw-------.</summary>
    public const UnixFileMode PrivateFile = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>Directories of the data root that belong to the embedded PostgreSQL's service user (already 0700, its own).</summary>
    private static readonly string[] NotOurs = ["postgres", "postgres-run"];

    private const UnixFileMode GroupOrOther = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
        | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    /// <summary>
    /// Creates the data root 0711, or tightens an existing one (an older version made it 0755), and takes group and
    /// other rights off every directory directly in it, so an upgraded tree is closed before anything is served.
    /// </summary>
    public static void Secure(string dataRoot)
    {
        var root = Path.GetFullPath(dataRoot);
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(root);
            return;
        }
        Directory.CreateDirectory(root, Root);
        File.SetUnixFileMode(root, Root);
        foreach (var dir in new DirectoryInfo(root).EnumerateDirectories())
        {
            if (NotOurs.Contains(dir.Name) || dir.LinkTarget is not null) continue;
            if ((dir.UnixFileMode & GroupOrOther) != 0) File.SetUnixFileMode(dir.FullName, dir.UnixFileMode & ~GroupOrOther);
        }
    }

    /// <summary>Creates <paramref name="path"/> (and missing parents) and makes it 0700, whatever mode it had.</summary>
    public static string EnsurePrivate(string path)
    {
        Directory.CreateDirectory(path);
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, PrivateDirectory);
        return path;
    }

    /// <summary>Writes <paramref name="content"/> to a new 0600 file beside <paramref name="path"/>, then renames it over.</summary>
    public static void WritePrivateFileAtomically(string path, string content)
    {
        var temp = path + ".tmp";
        File.Delete(temp);
        using (var stream = new FileStream(temp, PrivateFileOptions(FileMode.CreateNew)))
        using (var writer = new StreamWriter(stream))
            writer.Write(content);
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>Writes <paramref name="content"/> to a new 0600 file (replacing one that exists).</summary>
    public static async Task WritePrivateFileAsync(string path, string content, CancellationToken cancellationToken)
    {
        File.Delete(path);
        await using var stream = new FileStream(path, PrivateFileOptions(FileMode.CreateNew));
        await using var writer = new StreamWriter(stream);
        await writer.WriteAsync(content.AsMemory(), cancellationToken);
    }

    private static FileStreamOptions PrivateFileOptions(FileMode mode)
    {
        var options = new FileStreamOptions { Mode = mode, Access = FileAccess.Write, Share = FileShare.None };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = PrivateFile;
        return options;
    }
}
