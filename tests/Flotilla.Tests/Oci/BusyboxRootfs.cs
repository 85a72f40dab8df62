using System.Diagnostics;

namespace Flotilla.Tests.Oci;

/// <summary>
/// A minimal root filesystem in a temp dir: /bin/busybox (static) with applet symlinks, /etc/passwd and
/// /etc/group with root, a named user and nobody. Short paths: conmon and runc paths stay well under limits.
/// </summary>
public sealed class BusyboxRootfs : IDisposable
{
    private static readonly string[] Applets =
    [
        "sh", "echo", "cat", "sleep", "id", "tty", "ls", "grep", "touch", "true", "false", "ip", "ifconfig", "stty",
        "head", "wc", "dd", "trap", "kill", "ps", "env", "mkdir", "rm", "pwd", "hostname", "yes", "tail", "printf", "test", "[",
    ];

    public BusyboxRootfs()
    {
        Root = Path.Combine(Path.GetTempPath(), "flt-" + Guid.NewGuid().ToString("N")[..8]);
        Rootfs = Path.Combine(Root, "rootfs");
        foreach (var d in new[] { "bin", "etc", "tmp", "proc", "sys", "dev", "root", "home/app", "data" })
            Directory.CreateDirectory(Path.Combine(Rootfs, d));
        File.Copy(BusyboxPath, Path.Combine(Rootfs, "bin", "busybox"));
        foreach (var a in Applets) File.CreateSymbolicLink(Path.Combine(Rootfs, "bin", a), "busybox");
        File.WriteAllText(Path.Combine(Rootfs, "etc", "passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n");
        File.WriteAllText(Path.Combine(Rootfs, "etc", "group"),
            "root:x:0:\nwheel:x:10:app\napp:x:1000:\nstaff:x:50:app,root\nnogroup:x:65534:\n");
        DataRoot = Path.Combine(Root, "d");
        Directory.CreateDirectory(DataRoot);
    }

    public static string BusyboxPath => File.Exists("/bin/busybox") ? "/bin/busybox" : "/usr/bin/busybox";

    public string Root { get; }
    public string Rootfs { get; }

    /// <summary>A data dir for the engine (runc root, containers).</summary>
    public string DataRoot { get; }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
            // a mount left behind by a failed test: report it rather than hide it
            Debug.WriteLine($"could not remove {Root}");
        }
    }
}
