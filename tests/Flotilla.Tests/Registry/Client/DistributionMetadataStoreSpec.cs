using System.Text;
using Flotilla.NodeRuntime.Distribution;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Storage;
using Xunit;

namespace Flotilla.Tests.Registry.Client;

/// <summary>The engine's file-backed distribution metadata: DiffID ↔ registry blobs, per registry and repository.</summary>
public sealed class DistributionMetadataStoreSpec : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "flotilla-dm-" + Guid.NewGuid().ToString("N")[..12]);

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); }
        catch (DirectoryNotFoundException) { }
    }

    private static Digest D(string seed) => Digest.Of(Encoding.UTF8.GetBytes(seed));

    [Fact]
    public async Task Entries_survive_a_new_store_over_the_same_directory()
    {
        var diffId = D("layer");
        var blob = D("layer.gz");
        await new DistributionMetadataStore(_root).AddAsync(diffId, blob, MediaTypes.DockerLayerGzip, 123, "127.0.0.1:5000", "team/app");

        var reopened = new DistributionMetadataStore(_root);
        var entry = Assert.Single(await reopened.BlobsOfAsync(diffId));
        Assert.Equal((blob, MediaTypes.DockerLayerGzip, 123L, "127.0.0.1:5000", "team/app"),
            (entry.Digest, entry.MediaType, entry.Size, entry.Registry, entry.Repository));
        Assert.Equal(diffId, await reopened.DiffIdOfAsync(blob));
        Assert.Null(await reopened.DiffIdOfAsync(D("unknown")));
        Assert.Empty(await reopened.BlobsOfAsync(D("unknown")));
        Assert.True(File.Exists(Path.Combine(_root, "v2metadata-by-diffid", "sha256", diffId.Hex)));
        Assert.True(File.Exists(Path.Combine(_root, "diffid-by-digest", "sha256", blob.Hex)));
        Assert.Empty(Directory.GetFiles(_root, "*.tmp", SearchOption.AllDirectories));
    }

    [Fact]
    public async Task The_newest_entry_comes_first_and_a_repeated_one_moves_up_instead_of_doubling()
    {
        var store = new DistributionMetadataStore(_root);
        var diffId = D("layer");
        await store.AddAsync(diffId, D("a.gz"), MediaTypes.DockerLayerGzip, 1, "r", "one");
        await store.AddAsync(diffId, D("a.gz"), MediaTypes.DockerLayerGzip, 1, "r", "two");
        await store.AddAsync(diffId, D("a.gz"), MediaTypes.DockerLayerGzip, 1, "r", "one");
        Assert.Equal(["one", "two"], (await store.BlobsOfAsync(diffId)).Select(e => e.Repository));
    }

    [Fact]
    public async Task Repositories_per_blob_and_entries_per_layer_are_capped_dropping_the_oldest()
    {
        var store = new DistributionMetadataStore(_root);
        var diffId = D("layer");
        for (var i = 0; i < 12; i++) await store.AddAsync(diffId, D("a.gz"), MediaTypes.DockerLayerGzip, 1, "r", $"repo{i}");
        var kept = await store.BlobsOfAsync(diffId);
        Assert.Equal(DistributionMetadataStore.MaxRepositoriesPerBlob, kept.Count);
        Assert.Equal("repo11", kept[0].Repository);
        Assert.DoesNotContain(kept, e => e.Repository is "repo0" or "repo3");

        for (var i = 0; i < 40; i++) await store.AddAsync(diffId, D("blob" + i), MediaTypes.DockerLayerGzip, 1, "r", "x");
        kept = await store.BlobsOfAsync(diffId);
        Assert.Equal(DistributionMetadataStore.MaxEntriesPerLayer, kept.Count);
        Assert.Equal(D("blob39"), kept[0].Digest);
    }

    [Fact]
    public async Task Concurrent_adds_to_one_layer_lose_nothing()
    {
        var store = new DistributionMetadataStore(_root);
        var diffId = D("layer");
        await Task.WhenAll(Enumerable.Range(0, 6).Select(i => Task.Run(() => store.AddAsync(diffId, D("b" + i), MediaTypes.DockerLayerGzip, 1, "r", "x"))));
        Assert.Equal(6, (await store.BlobsOfAsync(diffId)).Count);
    }

    private const string Valid = """{"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000001","mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":10,"registry":"r","repository":"x"}""";

    /// <summary>What a layer's file may hold after a crash, a bad disk or a hand edit, and how many entries it yields.</summary>
    [Theory]
    [InlineData("", 0)]
    [InlineData("{", 0)]
    [InlineData("null", 0)]
    [InlineData("[]", 0)]
    [InlineData("\"blobs\"", 0)]
    [InlineData("{}", 0)]
    [InlineData("""{"blobs":5}""", 0)]
    [InlineData("""{"blobs":[null, 7]}""", 0)]
    [InlineData("""{"blobs":[null]}""", 0)]
    [InlineData("""{"blobs":[{}]}""", 0)]
    [InlineData("""{"blobs":[{"digest":"sha256:xyz","mediaType":"m","size":1,"registry":"r","repository":"x"}]}""", 0)]
    [InlineData("""{"blobs":[{"digest":"SHA256:0000000000000000000000000000000000000000000000000000000000000001","mediaType":"m","size":1,"registry":"r","repository":"x"}]}""", 0)]
    [InlineData("""{"blobs":[{"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000001","mediaType":"m","size":-1,"registry":"r","repository":"x"}]}""", 0)]
    [InlineData("""{"blobs":[{"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000001","mediaType":"m","size":1,"registry":" ","repository":"x"}]}""", 0)]
    [InlineData("""{"blobs":[{"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000001","mediaType":"","size":1,"registry":"r","repository":"x"}]}""", 0)]
    [InlineData("""{"blobs":[{"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000001","mediaType":"m","size":"big","registry":"r","repository":"x"}]}""", 0)]
    [InlineData("""{"blobs":[{"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000001","mediaType":"m","size":1,"registry":"r","repository":"x","seen":"yesterday"}]}""", 0)]
    [InlineData("""{"blobs":[""" + Valid + """,{"digest":"nope"}]}""", 1)]
    [InlineData("""{"blobs":[""" + Valid + "]}", 1)]
    [InlineData("""{"blobs":[""" + Valid + "]", 0)] // cut short
    [InlineData("""{"blobs":[""" + Valid + """],"future":{"field":true}}""", 1)]
    public async Task A_corrupt_or_partial_file_reads_as_unknown_and_the_next_add_replaces_it(string content, int valid)
    {
        var store = new DistributionMetadataStore(_root);
        var diffId = D("layer");
        Directory.CreateDirectory(Path.GetDirectoryName(store.PathOf(diffId))!);
        await File.WriteAllTextAsync(store.PathOf(diffId), content);
        Assert.Equal(valid, (await store.BlobsOfAsync(diffId)).Count);

        await store.AddAsync(diffId, D("new.gz"), MediaTypes.DockerLayerGzip, 5, "r", "y");
        var after = await store.BlobsOfAsync(diffId);
        Assert.Equal(valid + 1, after.Count);
        Assert.Equal(D("new.gz"), after[0].Digest);
    }

    [Fact]
    public async Task Binary_garbage_an_oversized_file_and_a_directory_in_place_of_a_file_are_unknown_and_adds_do_not_throw()
    {
        var store = new DistributionMetadataStore(_root);
        var garbage = D("garbage");
        Directory.CreateDirectory(Path.GetDirectoryName(store.PathOf(garbage))!);
        await File.WriteAllBytesAsync(store.PathOf(garbage), [0xff, 0xfe, 0x00, 0x7b, 0x22]);
        Assert.Empty(await store.BlobsOfAsync(garbage));

        var huge = D("huge");
        await File.WriteAllTextAsync(store.PathOf(huge), """{"blobs":[""" + string.Join(",", Enumerable.Repeat(Valid, 3000)) + "]}");
        Assert.Empty(await store.BlobsOfAsync(huge));

        var directory = D("directory");
        Directory.CreateDirectory(store.PathOf(directory));
        Assert.Empty(await store.BlobsOfAsync(directory));
        await store.AddAsync(directory, D("x.gz"), MediaTypes.DockerLayerGzip, 1, "r", "x"); // cannot be written: dropped, no exception
        Assert.Empty(await store.BlobsOfAsync(directory));

        var blob = D("blob.gz");
        Directory.CreateDirectory(Path.Combine(_root, "diffid-by-digest", "sha256"));
        await File.WriteAllTextAsync(Path.Combine(_root, "diffid-by-digest", "sha256", blob.Hex), "not a digest");
        Assert.Null(await store.DiffIdOfAsync(blob));
    }
}
