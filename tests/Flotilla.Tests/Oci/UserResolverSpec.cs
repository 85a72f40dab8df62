using Flotilla.NodeRuntime.Oci;
using Xunit;

namespace Flotilla.Tests.Oci;

public sealed class UserResolverSpec
{
    private static readonly string[] Passwd =
    [
        "root:x:0:0:root:/root:/bin/sh", "# comment", "app:x:1000:1000:app:/home/app:/bin/sh", "daemon:x:2:2::/:/bin/false",
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false",
    ];

    private static readonly string[] Group = ["root:x:0:", "wheel:x:10:app,daemon", "app:x:1000:", "staff:x:50:app", "nogroup:x:65534:"];

    [Theory]
    [InlineData("", 0, 0, "", "/root")]
    [InlineData("root", 0, 0, "", "/root")]
    [InlineData("app", 1000, 1000, "10,50", "/home/app")]
    [InlineData("1000", 1000, 1000, "10,50", "/home/app")]
    [InlineData("app:staff", 1000, 50, "", "/home/app")]
    [InlineData("app:10", 1000, 10, "", "/home/app")]
    [InlineData("1000:999", 1000, 999, "", "/home/app")]
    [InlineData("4242", 4242, 0, "", "/")]
    [InlineData("4242:4343", 4242, 4343, "", "/")]
    [InlineData("nobody", 65534, 65534, "", "/nonexistent")]
    [InlineData(":staff", 0, 50, "", "/root")]
    public void Resolves_like_docker(string user, int uid, int gid, string extra, string home)
    {
        var r = UserResolver.Resolve(user, Passwd, Group);
        Assert.Equal((uid, gid, home), (r.Uid, r.Gid, r.Home));
        Assert.Equal(extra, string.Join(',', r.AdditionalGids));
    }

    [Theory]
    [InlineData("ghost", "unable to find user ghost: no matching entries in passwd file")]
    [InlineData("app:ghosts", "unable to find group ghosts: no matching entries in group file")]
    [InlineData("1000:ghosts", "unable to find group ghosts: no matching entries in group file")]
    public void Unknown_names_fail_with_dockers_messages(string user, string message) =>
        Assert.Equal(message, Assert.Throws<UnknownUserException>(() => UserResolver.Resolve(user, Passwd, Group)).Message);

    [Fact]
    public void Without_passwd_numeric_ids_work_and_names_do_not()
    {
        Assert.Equal(5, UserResolver.Resolve("5:6", null, null).Uid);
        Assert.Equal(0, UserResolver.Resolve("", null, null).Uid);
        Assert.Equal("unable to find user app: no matching entries in passwd file",
            Assert.Throws<UnknownUserException>(() => UserResolver.Resolve("app", null, null)).Message);
    }

    [Fact]
    public void Symlinked_etc_files_never_leave_the_rootfs()
    {
        var root = Directory.CreateTempSubdirectory("flt-user-").FullName;
        try
        {
            var rootfs = Path.Combine(root, "rootfs");
            Directory.CreateDirectory(Path.Combine(rootfs, "etc"));
            Directory.CreateDirectory(Path.Combine(rootfs, "real"));
            // The host has an "escaper" user; the rootfs's links point at /etc/passwd-like host paths.
            File.WriteAllText(Path.Combine(root, "passwd"), "escaper:x:4444:4444::/:/bin/sh\n");
            File.CreateSymbolicLink(Path.Combine(rootfs, "etc", "passwd"), "../../../../../../.." + Path.Combine(root, "passwd"));
            File.CreateSymbolicLink(Path.Combine(rootfs, "etc", "group"), Path.Combine(root, "passwd"));
            Assert.Throws<UnknownUserException>(() => UserResolver.Resolve(rootfs, "escaper"));

            // An absolute link is resolved inside the rootfs.
            File.Delete(Path.Combine(rootfs, "etc", "passwd"));
            File.WriteAllText(Path.Combine(rootfs, "real", "passwd"), "inside:x:7:7::/:/bin/sh\n");
            File.CreateSymbolicLink(Path.Combine(rootfs, "etc", "passwd"), "/real/passwd");
            Assert.Equal(7, UserResolver.Resolve(rootfs, "inside").Uid);
            Assert.Equal(Path.Combine(rootfs, "real", "passwd"), RootfsPaths.SecureJoin(rootfs, "/etc/passwd"));
            Assert.Equal(Path.Combine(rootfs, "etc"), RootfsPaths.SecureJoin(rootfs, "/../../etc"));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}
