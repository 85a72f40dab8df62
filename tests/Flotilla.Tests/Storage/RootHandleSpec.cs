using System.Formats.Tar;
using System.Text;
using Flotilla.NodeRuntime.Storage;
using Xunit;

namespace Flotilla.Tests.Storage;

/// <summary>docker cp's lookups resolve <c>..</c> and absolute symlinks inside the rootfs, as dockerd's chroot does (issue 13, item 7).</summary>
public sealed class RootHandleSpec : IDisposable
{
    private readonly string _rootfs = Directory.CreateTempSubdirectory("flt-root-").FullName;
    private readonly string _marker = "flt-" + Guid.NewGuid().ToString("N")[..8] + ".txt";

    public RootHandleSpec()
    {
        Directory.CreateDirectory(Path.Combine(_rootfs, "etc"));
        File.WriteAllText(Path.Combine(_rootfs, "etc", "hostname"), "inside\n");
        File.CreateSymbolicLink(Path.Combine(_rootfs, "abs"), "/etc");
        File.CreateSymbolicLink(Path.Combine(_rootfs, "up"), "../../../../../etc");
        File.CreateSymbolicLink(Path.Combine(_rootfs, "magic"), "/proc/self/root/etc");
    }

    public void Dispose()
    {
        Directory.Delete(_rootfs, recursive: true);
        File.Delete(Path.Combine("/etc", _marker));
    }

    [Theory]
    [InlineData("/abs/hostname")]
    [InlineData("/up/hostname")]
    [InlineData("/../../../etc/hostname")]
    [InlineData("abs/../abs/./hostname")]
    public async Task Paths_climbing_or_linking_out_stay_in_the_rootfs(string path)
    {
        using var root = RootHandle.Open(_rootfs);
        Assert.Equal(7, TreeArchiver.Stat(root, path)!.Size);
        using var buffer = new MemoryStream();
        await using (var tar = new TarWriter(buffer, TarEntryFormat.Pax, leaveOpen: true))
            await TreeArchiver.WriteAsync(tar, root, path, "hostname", CancellationToken.None);
        buffer.Position = 0;
        var entry = new TarReader(buffer).GetNextEntry()!;
        Assert.Equal("inside\n", new StreamReader(entry.DataStream!).ReadToEnd());
    }

    [Fact]
    public void A_link_through_proc_self_does_not_reach_the_engines_root()
    {
        using var root = RootHandle.Open(_rootfs);
        Assert.Null(TreeArchiver.Stat(root, "/magic/hostname"));
    }

    [Fact]
    public void Copying_into_an_absolute_symlink_writes_inside_the_rootfs()
    {
        using var archive = new MemoryStream();
        using (var tar = new TarWriter(archive, TarEntryFormat.Pax, leaveOpen: true))
            tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, _marker)
            {
                Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
                DataStream = new MemoryStream(Encoding.UTF8.GetBytes("copied\n")),
            });
        archive.Position = 0;
        using var root = RootHandle.Open(_rootfs);
        LayerUnpacker.CopyInto(archive, root, "/abs", noOverwriteDirNonDir: false);
        Assert.Equal("copied\n", File.ReadAllText(Path.Combine(_rootfs, "etc", _marker)));
        Assert.False(File.Exists(Path.Combine("/etc", _marker)));
    }
}
