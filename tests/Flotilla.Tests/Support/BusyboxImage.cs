using System.Formats.Tar;
using Flotilla.Tests.Images;

namespace Flotilla.Tests.Support;

/// <summary>A runnable busybox rootfs for container tests: applet links, passwd/group with a non-root user, /tmp.</summary>
public static class BusyboxImage
{
    public static readonly string[] Applets =
        ["sh", "echo", "cat", "sleep", "id", "ls", "env", "pwd", "true", "false", "hostname", "ps", "top", "touch", "rm", "mkdir",
         "grep", "head", "tail", "wc", "date", "yes", "seq", "ip", "printf", "test", "kill", "uname", "tty", "stat", "whoami"];

    public static byte[] Rootfs()
    {
        var busybox = File.Exists("/bin/busybox") ? "/bin/busybox" : "/usr/bin/busybox";
        return ArchiveFixtures.Tar(w =>
        {
            ArchiveFixtures.AddDir(w, "bin/");
            ArchiveFixtures.AddDir(w, "etc/");
            w.WriteEntry(new PaxTarEntry(TarEntryType.Directory, "tmp/") { Mode = (UnixFileMode)Convert.ToInt32("1777", 8) });
            ArchiveFixtures.AddDir(w, "root/");
            ArchiveFixtures.AddDir(w, "home/");
            w.WriteEntry(new PaxTarEntry(TarEntryType.Directory, "home/app/") { Uid = 1000, Gid = 1000, Mode = (UnixFileMode)Convert.ToInt32("755", 8) });
            ArchiveFixtures.AddFile(w, "bin/busybox", File.ReadAllBytes(busybox), (UnixFileMode)Convert.ToInt32("755", 8));
            foreach (var applet in Applets)
                w.WriteEntry(new PaxTarEntry(TarEntryType.SymbolicLink, $"bin/{applet}") { LinkName = "busybox" });
            ArchiveFixtures.AddFile(w, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"u8.ToArray());
            ArchiveFixtures.AddFile(w, "etc/group", "root:x:0:\napp:x:1000:\nnogroup:x:65534:\n"u8.ToArray());
            ArchiveFixtures.AddFile(w, "hello.txt", "hello from flotilla\n"u8.ToArray());
        });
    }
}
