using System.IO.Compression;
using System.Net.Http.Headers;
using System.Text.Json;
using Flotilla.NodeRuntime.Distribution;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Storage;
using Flotilla.Tests.Images;
using Xunit;

namespace Flotilla.Tests.Registry.Client;

/// <summary>
/// The engine's push against Debian's docker-registry, in process: layers go out gzip-compressed in a Docker schema 2
/// manifest, and the distribution metadata (on disk) turns later pushes into HEADs and mounts, also after a restart.
/// </summary>
public sealed class ImagePushCompressionSpec(DistributionRegistry registry) : IClassFixture<DistributionRegistry>, IDisposable
{
    private readonly string _data = Path.Combine(Path.GetTempPath(), "flotilla-push-" + Guid.NewGuid().ToString("N")[..12]);

    public void Dispose()
    {
        try { Directory.Delete(_data, recursive: true); }
        catch (IOException) { }
    }

    /// <summary>The node runtime's distribution side over <see cref="_data"/>: a new one is a restart.</summary>
    private ImageDistribution Open() => new(new NodeImageStore(_data));

    private static string Unique(string name) => $"{name}-{Guid.NewGuid().ToString("N")[..8]}";

    /// <summary>Two layers no other test has: nothing in the registry or the metadata knows them.</summary>
    private static TestImage UniqueImage()
    {
        var marker = Guid.NewGuid().ToString("N");
        // Some bulk that compresses, so a compressed blob is visibly not the layer.
        var text = string.Concat(Enumerable.Repeat($"line of {marker}\n", 2000));
        return ArchiveFixtures.Image(ArchiveFixtures.SmallLayer("base.txt", text), ArchiveFixtures.SmallLayer("top.txt", marker));
    }

    /// <summary>Stores the image as a load would (plain layers by DiffID, the local OCI manifest); returns the manifest's digest.</summary>
    private static async Task<Digest> StoreAsync(ImageDistribution distribution, TestImage image)
    {
        var content = distribution.Store.Content;
        var layers = new List<Descriptor>();
        foreach (var layer in image.Layers) layers.Add(await content.IngestAsync(layer, MediaTypes.OciLayer));
        var config = await content.IngestAsync(image.ConfigBytes, MediaTypes.OciConfig);
        return (await content.IngestAsync(LocalManifest.Build(config, layers), MediaTypes.OciManifest)).Digest;
    }

    private sealed class Recorder : IDistributionProgress
    {
        public List<(string Status, string? Id)> Lines { get; } = [];

        public Task ReportAsync(string status, string? id = null, long? current = null, long? total = null)
        {
            lock (Lines) Lines.Add((status, id));
            return Task.CompletedTask;
        }

        /// <summary>The last status of each layer.</summary>
        public Dictionary<string, string> Final => Lines.Where(l => l.Id is not null).GroupBy(l => l.Id!).ToDictionary(g => g.Key, g => g.Last().Status);
    }

    private async Task<(PushResult Result, Recorder Progress)> PushAsync(ImageDistribution distribution, string repository, Digest manifest)
    {
        var reference = ImageReference.Parse($"{registry.Address}/{repository}");
        var session = await distribution.Pusher.OpenAsync(reference, null);
        var progress = new Recorder();
        return (await distribution.Pusher.PushAsync(session, reference, manifest, progress), progress);
    }

    private async Task<(byte[] Bytes, string? MediaType)> ManifestAsync(string repository, string reference)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"v2/{repository}/manifests/{reference}");
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(MediaTypes.DockerManifest));
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(MediaTypes.OciManifest));
        using var response = await registry.Http.SendAsync(request);
        Assert.True(response.IsSuccessStatusCode, $"GET manifest {repository}:{reference}: {(int)response.StatusCode}");
        return (await response.Content.ReadAsByteArrayAsync(), response.Content.Headers.ContentType?.MediaType);
    }

    private static byte[] Gunzip(byte[] gzip)
    {
        using var input = new GZipStream(new MemoryStream(gzip), CompressionMode.Decompress);
        var output = new MemoryStream();
        input.CopyTo(output);
        return output.ToArray();
    }

    [Fact]
    public async Task Push_stores_gzip_blobs_that_unpack_to_the_diff_ids_under_a_docker_schema2_manifest_with_the_same_config()
    {
        using var distribution = Open();
        var image = UniqueImage();
        var repository = Unique("gzip/app");
        var (result, progress) = await PushAsync(distribution, repository, await StoreAsync(distribution, image));

        Assert.Equal(2, distribution.Pusher.LayersCompressed);
        var ids = image.DiffIds.Select(d => d.Short).ToList();
        Assert.All(ids, id => Assert.Equal("Pushed", progress.Final[id]));
        Assert.Equal([ids[1], ids[0]], progress.Lines.Where(l => l.Status == "Preparing").Select(l => l.Id)); // top layer first, as docker lists them
        Assert.Contains(progress.Lines, l => l.Status == "Pushing" && l.Id == ids[0]);

        var (bytes, mediaType) = await ManifestAsync(repository, "latest");
        Assert.Equal(MediaTypes.DockerManifest, mediaType);
        Assert.Equal(Digest.Of(bytes), result.ManifestDigest);
        Assert.Equal(bytes.Length, result.Size);
        var manifest = OciJson.Parse<OciManifest>(bytes, "pushed manifest");
        Assert.Equal(MediaTypes.DockerManifest, manifest.MediaType);
        Assert.Equal((MediaTypes.DockerConfig, image.Id.ToString(), (long)image.ConfigBytes.Length),
            (manifest.Config.MediaType, manifest.Config.Digest, manifest.Config.Size));
        Assert.Equal(2, manifest.Layers.Count);
        for (var i = 0; i < 2; i++)
        {
            var layer = manifest.Layers[i];
            Assert.Equal(MediaTypes.DockerLayerGzip, layer.MediaType);
            var blob = await registry.Http.GetByteArrayAsync($"v2/{repository}/blobs/{layer.Digest}");
            Assert.Equal(layer.Digest, Digest.Of(blob).ToString());
            Assert.Equal(layer.Size, blob.Length);
            Assert.NotEqual(image.DiffIds[i].ToString(), layer.Digest);
            Assert.Equal(image.DiffIds[i], Digest.Of(Gunzip(blob)));
        }
        Assert.True(manifest.Layers[0].Size < image.Layers[0].Length / 10, "the bulky layer went out compressed");

        // The engine knows each compressed blob by its DiffID now, and back.
        var known = Assert.Single(await distribution.Metadata.BlobsOfAsync(image.DiffIds[0]));
        Assert.Equal((manifest.Layers[0].Digest, registry.Address, repository), (known.Digest.ToString(), known.Registry, known.Repository));
        Assert.Equal(image.DiffIds[0], await distribution.Metadata.DiffIdOfAsync(known.Digest));

        // Pulled back into a fresh node: the same image ID (the config did not change), layers unpacked from the gzip blobs.
        var other = Path.Combine(_data, "other-node");
        using var puller = new ImageDistribution(new NodeImageStore(other));
        var plan = await puller.Puller.ResolveAsync(ImageReference.Parse($"{registry.Address}/{repository}"), null, new PlatformSpec("linux", HostPlatform.Architecture));
        Assert.Equal(image.Id, plan.ImageId);
        Assert.Equal(result.ManifestDigest, plan.ManifestDigest);
        LoadedImage pulled;
        using (puller.Store.BeginWrite()) pulled = await puller.Puller.FetchAsync(plan, new Recorder());
        Assert.Equal(image.Id, pulled.ImageId);
        Assert.Equal(image.DiffIds, pulled.Layers.Select(l => l.Digest));
    }

    [Fact]
    public async Task A_second_push_finds_every_layer_a_push_to_another_repository_mounts_them_and_both_survive_a_restart()
    {
        var image = UniqueImage();
        var first = Unique("again/one");
        var second = Unique("again/two");
        Digest manifest;
        Digest pushedDigest;
        using (var distribution = Open())
        {
            manifest = await StoreAsync(distribution, image);
            pushedDigest = (await PushAsync(distribution, first, manifest)).Result.ManifestDigest;
            Assert.Equal(2, distribution.Pusher.LayersCompressed);

            var (again, progress) = await PushAsync(distribution, first, manifest);
            Assert.All(image.DiffIds, d => Assert.Equal("Layer already exists", progress.Final[d.Short]));
            Assert.DoesNotContain(progress.Lines, l => l.Status is "Pushing" or "Pushed");
            Assert.Equal(2, distribution.Pusher.LayersCompressed); // nothing compressed again
            Assert.Equal(pushedDigest, again.ManifestDigest);

            var (mounted, mountProgress) = await PushAsync(distribution, second, manifest);
            Assert.All(image.DiffIds, d => Assert.Equal($"Mounted from {first}", mountProgress.Final[d.Short]));
            Assert.Equal(2, distribution.Pusher.LayersCompressed);
            Assert.Equal(pushedDigest, mounted.ManifestDigest); // the same blobs, so the same manifest
        }

        // A restart: a new store over the same data dir remembers which blobs hold the layers, and where.
        using (var restarted = Open())
        {
            var (_, progress) = await PushAsync(restarted, first, manifest);
            Assert.All(image.DiffIds, d => Assert.Equal("Layer already exists", progress.Final[d.Short]));
            var third = Unique("again/three");
            var (result, mountProgress) = await PushAsync(restarted, third, manifest);
            Assert.All(image.DiffIds, d => Assert.StartsWith("Mounted from again/", mountProgress.Final[d.Short]));
            Assert.Equal(0, restarted.Pusher.LayersCompressed);
            Assert.Equal(pushedDigest, result.ManifestDigest);
        }
    }

    [Fact]
    public async Task A_layer_pulled_compressed_is_pushed_back_as_the_blob_it_came_from_without_an_upload()
    {
        var image = UniqueImage();
        // Compressed by someone else (another level: other bytes than the engine's gzip would give).
        var blobs = image.Layers.Select(ArchiveFixtures.Gzip).ToList();
        var repository = Unique("pulled/app");
        await new RegistrySeeder(registry.Address).PushImageAsync(repository, "v1", image.ConfigBytes,
            blobs.Select(b => (b, MediaTypes.DockerLayerGzip)));

        Digest manifest;
        using (var distribution = Open())
        {
            var plan = await distribution.Puller.ResolveAsync(ImageReference.Parse($"{registry.Address}/{repository}:v1"), null,
                new PlatformSpec("linux", HostPlatform.Architecture));
            LoadedImage pulled;
            using (distribution.Store.BeginWrite()) pulled = await distribution.Puller.FetchAsync(plan, new Recorder());
            Assert.Equal(image.Id, pulled.ImageId);
            Assert.Equal(image.DiffIds[1], await distribution.Metadata.DiffIdOfAsync(Digest.Of(blobs[1])));
            manifest = pulled.ManifestDigest;
        }

        // Pushed back after a restart, under another tag of the same repository.
        using var restarted = Open();
        var (back, progress) = await PushAsync(restarted, repository + ":v2", manifest);
        Assert.All(image.DiffIds, d => Assert.Equal("Layer already exists", progress.Final[d.Short]));
        Assert.Equal(0, restarted.Pusher.LayersCompressed);
        var pushed = OciJson.Parse<OciManifest>((await ManifestAsync(repository, "v2")).Bytes, "pushed manifest");
        Assert.Equal(blobs.Select(b => Digest.Of(b).ToString()), pushed.Layers.Select(l => l.Digest));
        Assert.Equal(blobs.Select(b => (long)b.Length), pushed.Layers.Select(l => l.Size));
        Assert.Equal(Digest.Of((await ManifestAsync(repository, "v2")).Bytes), back.ManifestDigest);

        var (_, mounted) = await PushAsync(restarted, Unique("pulled/copy"), manifest);
        Assert.All(image.DiffIds, d => Assert.Equal($"Mounted from {repository}", mounted.Final[d.Short]));
    }

    [Fact]
    public async Task A_layer_already_here_is_recorded_for_another_repository_only_as_a_blob_this_node_verified()
    {
        var image = UniqueImage();
        var blobs = image.Layers.Select(ArchiveFixtures.Gzip).ToList();
        var seeder = new RegistrySeeder(registry.Address);
        var first = Unique("known/one");
        var second = Unique("known/two");
        var liar = Unique("known/liar");
        await seeder.PushImageAsync(first, "v1", image.ConfigBytes, blobs.Select(b => (b, MediaTypes.DockerLayerGzip)));
        await seeder.PushImageAsync(second, "v1", image.ConfigBytes, blobs.Select(b => (b, MediaTypes.DockerLayerGzip)));
        // Claims the same layers are other blobs: a pull that has the layers never downloads these to check.
        var other = image.Layers.Select(l => ArchiveFixtures.Gzip([.. l, .. new byte[1024]])).ToList();
        await seeder.PushImageAsync(liar, "v1", image.ConfigBytes, other.Select(b => (b, MediaTypes.DockerLayerGzip)));

        using var distribution = Open();
        async Task PullAsync(string repository)
        {
            var plan = await distribution.Puller.ResolveAsync(ImageReference.Parse($"{registry.Address}/{repository}:v1"), null,
                new PlatformSpec("linux", HostPlatform.Architecture));
            using (distribution.Store.BeginWrite()) await distribution.Puller.FetchAsync(plan, new Recorder());
        }
        await PullAsync(first);
        await PullAsync(second);
        await PullAsync(liar);

        var known = await distribution.Metadata.BlobsOfAsync(image.DiffIds[0]);
        Assert.Equal([second, first], known.Select(b => b.Repository));
        Assert.All(known, b => Assert.Equal(Digest.Of(blobs[0]), b.Digest));
        Assert.Null(await distribution.Metadata.DiffIdOfAsync(Digest.Of(other[0])));
    }

    [Fact]
    public async Task A_layer_stored_gzip_goes_out_as_stored_without_compressing_it_again()
    {
        using var distribution = Open();
        var image = UniqueImage();
        var content = distribution.Store.Content;
        var gzip = await content.IngestAsync(ArchiveFixtures.Gzip(image.Layers[0]), MediaTypes.OciLayerGzip);
        var plain = await content.IngestAsync(image.Layers[1], MediaTypes.OciLayer);
        var config = await content.IngestAsync(image.ConfigBytes, MediaTypes.OciConfig);
        var local = OciJson.Serialize(new OciManifest
        {
            MediaType = MediaTypes.OciManifest,
            Config = new OciDescriptor { MediaType = MediaTypes.OciConfig, Digest = config.Digest.ToString(), Size = config.Size },
            Layers =
            [
                new OciDescriptor { MediaType = MediaTypes.OciLayerGzip, Digest = gzip.Digest.ToString(), Size = gzip.Size },
                new OciDescriptor { MediaType = MediaTypes.OciLayer, Digest = plain.Digest.ToString(), Size = plain.Size },
            ],
        });
        var manifest = (await content.IngestAsync(local, MediaTypes.OciManifest)).Digest;
        var repository = Unique("stored/gzip");

        var (_, progress) = await PushAsync(distribution, repository, manifest);
        Assert.All(image.DiffIds, d => Assert.Equal("Pushed", progress.Final[d.Short]));
        Assert.Equal(1, distribution.Pusher.LayersCompressed); // only the plain one
        var pushed = OciJson.Parse<OciManifest>((await ManifestAsync(repository, "latest")).Bytes, "pushed manifest");
        Assert.Equal([MediaTypes.DockerLayerGzip, MediaTypes.DockerLayerGzip], pushed.Layers.Select(l => l.MediaType));
        Assert.Equal((gzip.Digest.ToString(), gzip.Size), (pushed.Layers[0].Digest, pushed.Layers[0].Size));

        var (_, again) = await PushAsync(distribution, repository, manifest);
        Assert.All(image.DiffIds, d => Assert.Equal("Layer already exists", again.Final[d.Short]));
    }

    /// <summary>Metadata a push must shrug off: unreadable, the wrong shape, or pointing at blobs the registry does not have.</summary>
    [Theory]
    [InlineData("garbage")]
    [InlineData("")]
    [InlineData("{\"blobs\":[")]
    [InlineData("{\"blobs\":[{\"digest\":\"sha256:1\"}]}")]
    [InlineData("stale")]
    [InlineData("directory")]
    public async Task Corrupt_partial_or_stale_metadata_is_treated_as_unknown_and_the_push_uploads(string kind)
    {
        using var distribution = Open();
        var image = UniqueImage();
        var manifest = await StoreAsync(distribution, image);
        var path = distribution.Metadata.PathOf(image.DiffIds[0]);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        switch (kind)
        {
            case "garbage":
                await File.WriteAllBytesAsync(path, [0x00, 0xff, 0x13, 0x37]);
                break;
            case "stale": // a blob this registry was said to hold in a repository, both long gone
                await distribution.Metadata.AddAsync(image.DiffIds[0], Digest.Of("gone"u8), MediaTypes.DockerLayerGzip, 42, registry.Address, "gone/repo");
                break;
            case "directory":
                Directory.CreateDirectory(path);
                break;
            default:
                await File.WriteAllTextAsync(path, kind);
                break;
        }
        var repository = Unique("corrupt/app");

        var (result, progress) = await PushAsync(distribution, repository, manifest);
        Assert.All(image.DiffIds, d => Assert.Equal("Pushed", progress.Final[d.Short]));
        var pushed = OciJson.Parse<OciManifest>((await ManifestAsync(repository, "latest")).Bytes, "pushed manifest");
        Assert.Equal(result.ManifestDigest, Digest.Of((await ManifestAsync(repository, "latest")).Bytes));
        Assert.Equal(image.DiffIds[0], Digest.Of(Gunzip(await registry.Http.GetByteArrayAsync($"v2/{repository}/blobs/{pushed.Layers[0].Digest}"))));
        if (kind != "directory")
            Assert.Contains(await distribution.Metadata.BlobsOfAsync(image.DiffIds[0]), b => b.Digest.ToString() == pushed.Layers[0].Digest);
    }
}
