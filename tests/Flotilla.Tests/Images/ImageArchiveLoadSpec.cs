using System.Text;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Storage;
using Xunit;
using static Flotilla.Tests.Images.ArchiveFixtures;

namespace Flotilla.Tests.Images;

public sealed class ImageArchiveLoadSpec : IDisposable
{
    private readonly TempStore _temp = new();

    public void Dispose() => _temp.Dispose();

    private async Task<IReadOnlyList<LoadedImage>> LoadAsync(byte[] archive) =>
        await new ImageArchiveReader(_temp.Store).LoadAsync(new MemoryStream(archive));

    private void AssertStored(LoadedImage loaded, TestImage image)
    {
        Assert.Equal(image.Id, loaded.ImageId);
        Assert.Equal(image.Id, loaded.ConfigDigest);
        Assert.Equal(image.DiffIds, loaded.Layers.Select(l => l.Digest));
        Assert.Equal(image.Layers.Select(l => (long)l.Length), loaded.Layers.Select(l => l.Size));
        Assert.All(loaded.Layers, l => Assert.Equal(MediaTypes.OciLayer, l.MediaType));
        Assert.Equal(image.ConfigBytes, File.ReadAllBytes(_temp.Store.PathOf(image.Id)));
        foreach (var (layer, bytes) in loaded.Layers.Zip(image.Layers)) Assert.Equal(bytes, File.ReadAllBytes(_temp.Store.PathOf(layer.Digest)));
        var manifest = OciJson.Parse<OciManifest>(File.ReadAllBytes(_temp.Store.PathOf(loaded.ManifestDigest)), "manifest");
        Assert.Equal(image.Id.ToString(), manifest.Config.Digest);
        Assert.Equal(image.DiffIds.Select(d => d.ToString()), manifest.Layers.Select(l => l.Digest));
        Assert.Empty(_temp.SpoolLeftovers());
    }

    [Fact]
    public async Task Loads_a_pre25_docker_archive_with_symlinked_layer()
    {
        var image = Busybox();
        var loaded = Assert.Single(await LoadAsync(DockerArchive(image, ["busybox:latest", "localhost/bb:1"])));
        AssertStored(loaded, image);
        Assert.Equal(["docker.io/library/busybox:latest", "localhost/bb:1"], loaded.RepoTags);
        Assert.Equal(["busybox:latest", "localhost/bb:1"], loaded.RawRepoTags);
        Assert.Equal(["sh"], loaded.Config.Config!.Cmd!);
    }

    [Fact]
    public async Task Loads_gzip_compressed_layers_of_a_docker_archive()
    {
        var image = Busybox();
        AssertStored(Assert.Single(await LoadAsync(DockerArchive(image, ["x:1"], (_, b) => Gzip(b)))), image);
    }

    [SkippableFact]
    public async Task Loads_zstd_compressed_layers_of_a_docker_archive()
    {
        var image = Busybox();
        var zstd = await CompressWithAsync("zstd", image.Layers[1]);
        Skip.If(zstd is null, "the zstd command is not installed (apt-get install zstd)");
        AssertStored(Assert.Single(await LoadAsync(DockerArchive(image, ["x:1"], (i, b) => i == 1 ? zstd : b))), image);
    }

    [Fact]
    public async Task Loads_a_gzip_compressed_archive()
    {
        var image = Busybox();
        AssertStored(Assert.Single(await LoadAsync(Gzip(DockerArchive(image, ["x:1"])))), image);
    }

    [SkippableFact]
    public async Task Loads_an_xz_compressed_archive()
    {
        var image = Busybox();
        var xz = await CompressWithAsync("xz", DockerArchive(image, ["x:1"]));
        Skip.If(xz is null, "the xz command is not installed (apt-get install xz-utils)");
        AssertStored(Assert.Single(await LoadAsync(xz)), image);
    }

    [Fact]
    public async Task Loads_an_oci_layout_with_gzip_layers_behind_a_nested_index()
    {
        var image = Busybox();
        var archive = OciLayout(image,
        [
            new() { ["org.opencontainers.image.ref.name"] = "localhost/bb:1" },                                      // podman
            new() { ["io.containerd.image.name"] = "docker.io/library/busybox:2", ["org.opencontainers.image.ref.name"] = "2" }, // docker
        ]);
        var loaded = Assert.Single(await LoadAsync(archive));
        AssertStored(loaded, image);
        Assert.Equal(["localhost/bb:1", "docker.io/library/busybox:2"], loaded.RepoTags);
    }

    [Fact]
    public async Task A_bare_ref_name_leaves_the_image_untagged()
    {
        var image = Image(SmallLayer("a", "a"));
        var loaded = Assert.Single(await LoadAsync(OciLayout(image, [new() { ["org.opencontainers.image.ref.name"] = "latest" }], nested: false)));
        AssertStored(loaded, image);
        Assert.Empty(loaded.RepoTags);
    }

    [Fact]
    public async Task Loads_a_hybrid_archive_from_manifest_json_with_blob_paths()
    {
        var image = Busybox();
        await PutAsync(_temp.Store, image);
        var archive = await SaveAsync(_temp.Store, new ImageToSave(image.Id, ["docker.io/library/busybox:latest"]));
        using var fresh = new TempStore();
        var loaded = Assert.Single(await new ImageArchiveReader(fresh.Store).LoadAsync(new MemoryStream(archive)));
        Assert.Equal(image.Id, loaded.ImageId);
        Assert.Equal(image.DiffIds, loaded.Layers.Select(l => l.Digest));
        Assert.Equal(["docker.io/library/busybox:latest"], loaded.RepoTags);
        Assert.Equal(["busybox:latest"], loaded.RawRepoTags);
    }

    [Fact]
    public async Task Several_images_and_a_shared_layer_in_one_archive()
    {
        var baseLayer = BusyboxRootfs();
        var a = Image(baseLayer, SmallLayer("a", "a"));
        var b = Image(baseLayer, SmallLayer("b", "b"));
        await PutAsync(_temp.Store, a);
        await PutAsync(_temp.Store, b);
        var archive = await SaveAsync(_temp.Store, new ImageToSave(a.Id, ["a:1"]), new ImageToSave(b.Id, ["b:1", "b:2"]));
        using var fresh = new TempStore();
        var loaded = await new ImageArchiveReader(fresh.Store).LoadAsync(new MemoryStream(archive));
        Assert.Equal([a.Id, b.Id], loaded.Select(l => l.ImageId));
        Assert.Equal(["docker.io/library/b:1", "docker.io/library/b:2"], loaded[1].RepoTags);
        Assert.Equal(loaded[0].Layers[0], loaded[1].Layers[0]);
    }

    [Fact]
    public async Task Loads_a_64MiB_layer()
    {
        // 64 MiB of random layer; reports the time. (Streaming is by construction: spool file → decompressor → store.)
        var big = ArchiveFixtures.Tar(w =>
        {
            var data = new byte[64 << 20];
            new Random(42).NextBytes(data);
            AddFile(w, "big.bin", data);
        });
        var image = Image(big);
        var archive = DockerArchive(image, ["big:1"]);
        big = null!;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var loaded = Assert.Single(await LoadAsync(archive));
        sw.Stop();
        AssertStored(loaded, image);
        Console.WriteLine($"64 MiB docker-archive loaded in {sw.ElapsedMilliseconds} ms");
    }
}
