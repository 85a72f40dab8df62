using System.Text.Json;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Storage;
using Xunit;
using static Flotilla.Tests.Images.ArchiveFixtures;

namespace Flotilla.Tests.Images;

public sealed class ImportedRootfsSpec : IDisposable
{
    private readonly TempStore _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public async Task Imports_a_gzip_rootfs_as_one_uncompressed_layer_with_changes_applied()
    {
        var rootfs = BusyboxRootfs();
        var created = new DateTimeOffset(2025, 1, 2, 3, 4, 5, TimeSpan.Zero);
        var image = await ImportedRootfs.ImportAsync(_temp.Store, new MemoryStream(Gzip(rootfs)), new ImportOptions
        {
            Changes = ["CMD [\"/bin/busybox\",\"sh\"]", "ENV GREETING=hi", "EXPOSE 8080", "WORKDIR /srv"],
            Message = "from a test",
            Created = created,
            RepoTags = ["imported:1"],
        });
        var layer = Assert.Single(image.Layers);
        Assert.Equal(Digest.Of(rootfs), layer.Digest);
        Assert.Equal(rootfs.Length, layer.Size);
        Assert.Equal(rootfs, File.ReadAllBytes(_temp.Store.PathOf(layer.Digest)));

        var configBytes = File.ReadAllBytes(_temp.Store.PathOf(image.ImageId));
        Assert.Equal(image.ImageId, Digest.Of(configBytes));
        var config = OciJson.Parse<ImageConfigFile>(configBytes, "config");
        Assert.Equal([layer.Digest.ToString()], config.RootFs.DiffIds);
        Assert.Equal(["/bin/busybox", "sh"], config.Config!.Cmd!);
        Assert.Equal(["GREETING=hi"], config.Config.Env!);
        Assert.Equal(["8080/tcp"], config.Config.ExposedPorts!.Keys);
        Assert.Equal("/srv", config.Config.WorkingDir);
        Assert.Equal("from a test", Assert.Single(config.History!).Comment);
        Assert.Equal(created, config.Created);
        Assert.Equal(HostPlatform.Architecture, config.Architecture);
        Assert.Equal("linux", config.Os);
        Assert.Equal(["docker.io/library/imported:1"], image.RepoTags);

        var manifest = OciJson.Parse<OciManifest>(File.ReadAllBytes(_temp.Store.PathOf(image.ManifestDigest)), "manifest");
        Assert.Equal(image.ImageId.ToString(), manifest.Config.Digest);
        Assert.Equal(layer.Digest.ToString(), Assert.Single(manifest.Layers).Digest);
    }

    [Fact]
    public async Task Defaults_the_comment_and_created_time()
    {
        var before = DateTimeOffset.UtcNow.AddSeconds(-1);
        var image = await ImportedRootfs.ImportAsync(_temp.Store, new MemoryStream(SmallLayer("x", "y")));
        Assert.Equal("Imported from -", Assert.Single(image.Config.History!).Comment);
        Assert.True(image.Config.Created >= before);
        var json = JsonDocument.Parse(File.ReadAllBytes(_temp.Store.PathOf(image.ImageId)));
        Assert.Equal("Imported from -", json.RootElement.GetProperty("comment").GetString());
    }

    [SkippableFact]
    public async Task Imports_an_xz_rootfs()
    {
        var rootfs = SmallLayer("x", "y");
        var xz = await CompressWithAsync("xz", rootfs);
        Skip.If(xz is null, "the xz command is not installed (apt-get install xz-utils)");
        var image = await ImportedRootfs.ImportAsync(_temp.Store, new MemoryStream(xz));
        Assert.Equal(Digest.Of(rootfs), Assert.Single(image.Layers).Digest);
    }

    [Fact]
    public async Task Refuses_a_bad_change_before_reading_the_rootfs()
    {
        var ex = await Assert.ThrowsAsync<FormatException>(() =>
            ImportedRootfs.ImportAsync(_temp.Store, new MemoryStream(SmallLayer("x", "y")), new ImportOptions { Changes = ["RUN rm -rf /"] }));
        Assert.Equal("run is not a valid change command", ex.Message);
        Assert.Empty(_temp.Store.List());
    }

    [Fact]
    public async Task Refuses_something_that_is_not_a_tar()
    {
        var ex = await Assert.ThrowsAsync<InvalidDataException>(() =>
            ImportedRootfs.ImportAsync(_temp.Store, new MemoryStream(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 }.Concat(new byte[1024].Select(_ => (byte)'z')).ToArray())));
        Assert.Contains("invalid rootfs archive", ex.Message);
    }
}
