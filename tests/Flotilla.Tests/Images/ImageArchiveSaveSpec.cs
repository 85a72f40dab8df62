using System.Formats.Tar;
using System.Text.Json;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Storage;
using Xunit;
using static Flotilla.Tests.Images.ArchiveFixtures;

namespace Flotilla.Tests.Images;

public sealed class ImageArchiveSaveSpec : IDisposable
{
    private readonly TempStore _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public async Task Writes_the_docker25_hybrid_layout()
    {
        var image = Busybox();
        await PutAsync(_temp.Store, image);
        var archive = await SaveAsync(_temp.Store, new ImageToSave(image.Id, ["busybox:latest", "localhost:5000/team/bb:1"]));

        var names = new List<string>();
        using (var r = new TarReader(new MemoryStream(archive)))
            while (r.GetNextEntry() is { } e)
            {
                names.Add(e.Name);
                Assert.Equal(0, e.Uid);
                Assert.True(e.ModificationTime == Created || e.ModificationTime == DateTimeOffset.UnixEpoch, $"{e.Name} {e.ModificationTime}");
            }
        var entries = Entries(archive);
        var manifestDigest = Digest.Of(LocalManifest.Build(new Descriptor(MediaTypes.OciConfig, image.Id, image.ConfigBytes.Length),
            image.Layers.Select(l => new Descriptor(MediaTypes.OciLayer, Digest.Of(l), l.Length))));
        string[] blobs = [.. new[] { image.Id, manifestDigest }.Concat(image.DiffIds).Select(d => "blobs/sha256/" + d.Hex).Order(StringComparer.Ordinal)];
        Assert.Equal(["blobs/", "blobs/sha256/", .. blobs, "index.json", "manifest.json", "oci-layout", "repositories"], names);

        Assert.Equal(image.ConfigBytes, entries["blobs/sha256/" + image.Id.Hex]);
        foreach (var (d, l) in image.DiffIds.Zip(image.Layers)) Assert.Equal(l, entries["blobs/sha256/" + d.Hex]);
        Assert.Equal("""{"imageLayoutVersion":"1.0.0"}""", System.Text.Encoding.UTF8.GetString(entries["oci-layout"]));

        var manifestJson = JsonDocument.Parse(entries["manifest.json"]).RootElement;
        var entry = Assert.Single(manifestJson.EnumerateArray().ToList());
        Assert.Equal("blobs/sha256/" + image.Id.Hex, entry.GetProperty("Config").GetString());
        Assert.Equal(["busybox:latest", "localhost:5000/team/bb:1"], entry.GetProperty("RepoTags").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(image.DiffIds.Select(d => "blobs/sha256/" + d.Hex), entry.GetProperty("Layers").EnumerateArray().Select(e => e.GetString()));

        var repositories = JsonDocument.Parse(entries["repositories"]).RootElement;
        Assert.Equal(image.DiffIds[^1].Hex, repositories.GetProperty("busybox").GetProperty("latest").GetString());
        Assert.Equal(image.DiffIds[^1].Hex, repositories.GetProperty("localhost:5000/team/bb").GetProperty("1").GetString());

        var index = OciJson.Parse<OciIndex>(entries["index.json"], "index");
        Assert.Equal(MediaTypes.OciIndex, index.MediaType);
        Assert.Equal(2, index.Manifests.Count);
        Assert.All(index.Manifests, m => Assert.Equal(manifestDigest.ToString(), m.Digest));
        Assert.Equal("docker.io/library/busybox:latest", index.Manifests[0].Annotations!["io.containerd.image.name"]);
        Assert.Equal("latest", index.Manifests[0].Annotations!["org.opencontainers.image.ref.name"]);
        Assert.Equal("localhost:5000/team/bb:1", index.Manifests[1].Annotations!["io.containerd.image.name"]);
        var manifest = OciJson.Parse<OciManifest>(entries["blobs/sha256/" + manifestDigest.Hex], "manifest");
        Assert.Equal(MediaTypes.OciConfig, manifest.Config.MediaType);
        Assert.All(manifest.Layers, l => Assert.Equal(MediaTypes.OciLayer, l.MediaType));
    }

    [Fact]
    public async Task Is_deterministic()
    {
        var image = Busybox();
        await PutAsync(_temp.Store, image);
        var a = await SaveAsync(_temp.Store, new ImageToSave(image.Id, ["bb:1"]));
        await Task.Delay(1100);
        var b = await SaveAsync(_temp.Store, new ImageToSave(image.Id, ["bb:1"]));
        Assert.Equal(Digest.Of(a), Digest.Of(b));
    }

    [Fact]
    public async Task An_untagged_image_has_an_index_entry_without_annotations()
    {
        var image = Image(SmallLayer("a", "a"));
        await PutAsync(_temp.Store, image);
        var entries = Entries(await SaveAsync(_temp.Store, new ImageToSave(image.Id, [])));
        Assert.Null(Assert.Single(OciJson.Parse<OciIndex>(entries["index.json"], "index").Manifests).Annotations);
        Assert.Equal("{}", System.Text.Encoding.UTF8.GetString(entries["repositories"]));
    }

    [Fact]
    public async Task Save_then_load_gives_the_same_image()
    {
        var image = Busybox();
        await PutAsync(_temp.Store, image);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var archive = await SaveAsync(_temp.Store, new ImageToSave(image.Id, ["bb:1"]));
        var saved = sw.ElapsedMilliseconds;
        using var other = new TempStore();
        var loaded = Assert.Single(await new ImageArchiveReader(other.Store).LoadAsync(new MemoryStream(Gzip(archive))));
        Assert.Equal(image.Id, loaded.ImageId);
        Assert.Equal(image.DiffIds, loaded.Layers.Select(l => l.Digest));
        Assert.Equal(["docker.io/library/bb:1"], loaded.RepoTags);
        // The local manifest is synthesized the same way on both sides.
        Assert.True(_temp.Store.Exists(loaded.ManifestDigest) || Entries(archive).ContainsKey("blobs/sha256/" + loaded.ManifestDigest.Hex));
        Console.WriteLine($"save of a {archive.Length >> 10} KiB archive: {saved} ms");
    }

    [Fact]
    public async Task Refuses_an_image_that_is_not_in_the_store()
    {
        var image = Image(SmallLayer("a", "a"));
        await Assert.ThrowsAsync<InvalidOperationException>(() => SaveAsync(_temp.Store, new ImageToSave(image.Id, [])));
        await _temp.Store.IngestAsync(image.ConfigBytes, MediaTypes.OciConfig);
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => SaveAsync(_temp.Store, new ImageToSave(image.Id, [])));
        Assert.Contains("is not in the content store", ex.Message);
    }
}
