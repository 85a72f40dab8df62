using System.Net;
using System.Security.Cryptography;
using System.Text.Json;
using Flotilla.Cluster.Images;
using Flotilla.Cluster.Nodes;
using Flotilla.Cluster.Queries;
using Flotilla.Contracts.Containers;
using Flotilla.Contracts.Images;
using Flotilla.Gateway.Peer;
using Flotilla.NodeRuntime.Containers;
using Flotilla.NodeRuntime.Distribution;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Oci;
using Flotilla.NodeRuntime.Storage;
using Flotilla.Tests.Gateway;
using Flotilla.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Xunit;
using Xunit.Abstractions;

namespace Flotilla.Tests.Images;

/// <summary>A running host (node <c>gw-node</c>) that holds an imported busybox image: the peer the tests fetch from.</summary>
public sealed class PeerWithBusybox : IAsyncLifetime
{
    public RunningFlotilla Flotilla { get; } = new();
    public string ImageId { get; private set; } = "";
    public ImageView Image { get; private set; } = null!;
    public Digest Config => Digest.Parse(ImageId);
    public IReadOnlyList<Digest> Layers => Image.Layers.Select(l => Digest.Parse(l.DiffId)).ToList();
    public PeerEndpoint Endpoint => new("gw-node", $"127.0.0.1:{Flotilla.DockerPort}");

    public async Task InitializeAsync()
    {
        await Flotilla.InitializeAsync();
        var rootfs = Path.Combine(Flotilla.DataRoot, "busybox.tar");
        await File.WriteAllBytesAsync(rootfs, BusyboxImage.Rootfs());
        var import = await Flotilla.RunDockerAsync("import", rootfs, "peer/busybox:1");
        Assert.True(import.ExitCode == 0, import.ToString());
        ImageId = import.Stdout.Trim();
        Image = await Flotilla.Services.GetRequiredService<ClusterQueries>().ImageAsync(ImageId)
                ?? throw new InvalidOperationException("imported image not projected");
        // The fetcher only asks ready nodes: wait for the node's registration.
        Assert.True(await Eventually.TrueAsync(async () =>
            (await Flotilla.Services.GetRequiredService<ClusterQueries>().NodesAsync()).Any(n => n.ApiEndpoint.Length > 0),
            TimeSpan.FromSeconds(15)));
    }

    public Task DisposeAsync() => Flotilla.DisposeAsync();
}

/// <summary>A fresh host's image data in a temp dir (the host that lacks the image).</summary>
internal sealed class FreshHost : IAsyncDisposable
{
    public string DataRoot { get; } = Path.Combine(Path.GetTempPath(), "flotilla-fresh-" + Guid.NewGuid().ToString("N")[..8]);
    public NodeImageStore Store { get; }

    public FreshHost() => Store = new NodeImageStore(DataRoot);

    public IReadOnlyList<string> IngestLeftovers() => Directory.GetFileSystemEntries(Path.Combine(Store.Content.Root, "ingest"));

    public ValueTask DisposeAsync() => new(DataRootCleanup.DeleteAsync(DataRoot));
}

public sealed class PeerImageDistributionSpec(PeerWithBusybox peer, ITestOutputHelper output) : IClassFixture<PeerWithBusybox>
{
    private RunningFlotilla Flotilla => peer.Flotilla;

    private string PathFor(string which) => which switch
    {
        "config" => PeerBlobEndpoints.BlobsPath + peer.Config,
        "layer" => PeerBlobEndpoints.BlobsPath + peer.Layers[0],
        "absent" => PeerBlobEndpoints.BlobsPath + "sha256:" + new string('0', 64),
        "versioned" => "/v1.51" + PeerBlobEndpoints.BlobsPath + peer.Config,
        _ => PeerBlobEndpoints.BlobsPath + which,
    };

    [Theory]
    [InlineData("GET", "config", HttpStatusCode.OK)]
    [InlineData("HEAD", "config", HttpStatusCode.OK)]
    [InlineData("GET", "layer", HttpStatusCode.OK)]
    [InlineData("HEAD", "layer", HttpStatusCode.OK)]
    [InlineData("GET", "versioned", HttpStatusCode.OK)]
    [InlineData("GET", "absent", HttpStatusCode.NotFound)]
    [InlineData("HEAD", "absent", HttpStatusCode.NotFound)]
    [InlineData("GET", "sha256:abc", HttpStatusCode.BadRequest)]
    [InlineData("GET", "md5:d41d8cd98f00b204e9800998ecf8427e", HttpStatusCode.BadRequest)]
    [InlineData("GET", "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", HttpStatusCode.BadRequest)]
    [InlineData("GET", "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g", HttpStatusCode.BadRequest)]
    public async Task Peer_blob_endpoint_serves_the_content_store_by_digest(string method, string which, HttpStatusCode status)
    {
        using var response = await Flotilla.Docker.SendAsync(new HttpRequestMessage(new HttpMethod(method), PathFor(which)));
        Assert.Equal(status, response.StatusCode);
        var body = await response.Content.ReadAsByteArrayAsync();
        if (status == HttpStatusCode.OK)
        {
            var digest = which == "layer" ? peer.Layers[0] : peer.Config;
            var size = new FileInfo(Flotilla.Services.GetRequiredService<NodeImageStore>().Content.PathOf(digest)).Length;
            Assert.Equal(digest.ToString(), response.Headers.GetValues("Docker-Content-Digest").Single());
            Assert.Equal(size, response.Content.Headers.ContentLength);
            Assert.Equal("application/octet-stream", response.Content.Headers.ContentType?.MediaType);
            if (method == "GET") Assert.Equal(digest, Digest.Of(body));
            else Assert.Empty(body);
            return;
        }
        Assert.False(response.Headers.Contains("Docker-Content-Digest"));
        if (method == "HEAD") return;
        Assert.Equal("application/json", response.Content.Headers.GetValues("Content-Type").Single());
        Assert.False(string.IsNullOrEmpty(JsonDocument.Parse(body).RootElement.GetProperty("message").GetString()));
    }

    private PeerImageFetcher FetcherFor(FreshHost host, PeerBlobFetcher blobs, string nodeName) => new(
        host.Store, blobs, Flotilla.Services.GetRequiredService<ClusterQueries>(), Flotilla.Services.GetRequiredService<ImageService>(),
        new NodeDescription(nodeName, nodeName, ["node"], 1, 1 << 30, "test", "runc", new Dictionary<string, string>(), "127.0.0.1:1"));

    [Fact]
    public async Task A_host_without_the_image_fetches_config_layers_and_manifest_from_a_peer_and_records_it()
    {
        await using var host = new FreshHost();
        using var blobs = new PeerBlobFetcher(host.Store.Content);
        var fetcher = FetcherFor(host, blobs, "fresh-node");

        var started = System.Diagnostics.Stopwatch.StartNew();
        await fetcher.EnsureAsync(peer.ImageId, peer.ImageId, peer.Layers, CancellationToken.None);
        output.WriteLine($"fetched {host.Store.Content.List().Sum(d => host.Store.Content.SizeOf(d))} bytes in {started.ElapsedMilliseconds} ms");

        Assert.True(host.Store.Has(peer.Config, peer.Layers));
        Assert.True(host.Store.Content.Exists(Digest.Parse(peer.Image.ManifestDigest!)));
        Assert.Empty(host.IngestLeftovers());
        var chain = await host.Store.UnpackAsync(peer.Layers.Select(l => new Descriptor(MediaTypes.OciLayer, l, 0)).ToList());
        Assert.Equal("hello from flotilla\n", await File.ReadAllTextAsync(Path.Combine(host.Store.Snapshots.PathOf(chain[^1])!, "hello.txt")));
        // docker save on that host reads config and layers from its store.
        using var archive = new MemoryStream();
        await host.Store.SaveAsync(archive, [new ImageToSave(peer.Config, ["docker.io/peer/busybox:1"])]);
        Assert.True(archive.Length > 0);

        var view = await Flotilla.Services.GetRequiredService<ClusterQueries>().ImageAsync(peer.ImageId);
        Assert.Contains("fresh-node", view!.Nodes);
        await using var store = Flotilla.OpenStore();
        await using var session = store.QuerySession();
        var replicated = (await session.Events.FetchStreamAsync(ImageStreams.Key(peer.ImageId))).Select(e => e.Data).OfType<ImageReplicated>()
            .Single(e => e.Node == "fresh-node");
        Assert.Equal(["gw-node"], replicated.From);
        Assert.True(replicated.Bytes > 1_000_000, $"{replicated.Bytes} bytes"); // busybox itself

        // Everything is here now: a second call fetches and records nothing.
        await fetcher.EnsureAsync(peer.ImageId, peer.ImageId, peer.Layers, CancellationToken.None);
        await using var again = store.QuerySession();
        Assert.Single((await again.Events.FetchStreamAsync(ImageStreams.Key(peer.ImageId))).Select(e => e.Data).OfType<ImageReplicated>(),
            e => e.Node == "fresh-node");
    }

    [Fact]
    public async Task Two_callers_wanting_the_same_blob_share_one_transfer()
    {
        await using var host = new FreshHost();
        using var blobs = new PeerBlobFetcher(host.Store.Content);
        var first = blobs.FetchAsync(peer.Layers[0], [peer.Endpoint], CancellationToken.None);
        var second = blobs.FetchAsync(peer.Layers[0], [peer.Endpoint], CancellationToken.None);
        var results = await Task.WhenAll(first, second);
        Assert.Equal([false, true], results.Select(r => r.Joined));
        Assert.All(results, r => Assert.Equal("gw-node", r.From));
        Assert.True(host.Store.Content.Exists(peer.Layers[0]));
    }

    [Fact]
    public async Task A_container_rootfs_on_a_host_without_the_image_is_mounted_from_fetched_layers()
    {
        await using var host = new FreshHost();
        using var blobs = new PeerBlobFetcher(host.Store.Content);
        var monitor = new ConmonMonitor(new ConmonOptions { DataRoot = host.DataRoot }, new RuncDriver("/usr/sbin/runc", Path.Combine(host.DataRoot, "oci")));
        var runtime = new NodeContainerRuntime(host.DataRoot, host.Store, monitor, FetcherFor(host, blobs, "rootfs-node"));
        var id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        var definition = ContainerDefinition.Minimal("peer/busybox:1", peer.ImageId, ["sh"], imageLayers: peer.Image.Layers.Select(l => l.DiffId).ToList());

        var rootfs = await runtime.PrepareRootfsAsync(id, definition, CancellationToken.None);
        Assert.Equal("hello from flotilla\n", await File.ReadAllTextAsync(Path.Combine(rootfs, "hello.txt")));
        Assert.True(host.Store.Content.Exists(peer.Config));
        OverlayMount.Unmount(rootfs);
    }

    [Fact]
    public async Task When_no_peer_has_the_image_the_error_names_the_image_and_the_peers_asked()
    {
        await using var host = new FreshHost();
        using var blobs = new PeerBlobFetcher(host.Store.Content);
        var fetcher = FetcherFor(host, blobs, "lonely-node");
        var unknownImage = "sha256:" + new string('1', 64);
        var ex = await Assert.ThrowsAsync<ImageUnavailableException>(() =>
            fetcher.EnsureAsync(unknownImage, unknownImage, [Digest.Parse("sha256:" + new string('2', 64))], CancellationToken.None));
        output.WriteLine(ex.Message);
        Assert.Contains(unknownImage, ex.Message);
        Assert.Contains("gw-node", ex.Message);
        Assert.Contains("does not have it", ex.Message);
        Assert.Empty(host.Store.Content.List());
    }

    [Fact]
    public async Task A_peer_serving_wrong_bytes_is_refused_leaves_nothing_behind_and_the_next_peer_is_used()
    {
        var layer = peer.Layers[0];
        var good = await File.ReadAllBytesAsync(Flotilla.Services.GetRequiredService<NodeImageStore>().Content.PathOf(layer));
        var corrupted = good.ToArray();
        corrupted[corrupted.Length / 2] ^= 0xff; // same length: only the digest check can tell
        await using var liar = await BlobServer.StartAsync(corrupted, layer);

        await using var host = new FreshHost();
        using var blobs = new PeerBlobFetcher(host.Store.Content);
        var refused = await Assert.ThrowsAsync<PeerFetchException>(() => blobs.FetchAsync(layer, [liar.Endpoint], CancellationToken.None));
        output.WriteLine(refused.Message);
        Assert.Contains("served content with digest", refused.Message);
        Assert.Empty(host.Store.Content.List());
        Assert.Empty(host.IngestLeftovers());

        var fetched = await blobs.FetchAsync(layer, [liar.Endpoint, peer.Endpoint], CancellationToken.None);
        Assert.Equal("gw-node", fetched.From);
        Assert.Equal(2, liar.Requests);
        Assert.Equal([layer], host.Store.Content.List());
        Assert.Empty(host.IngestLeftovers());
    }

    [Fact]
    public async Task A_peer_announcing_another_digest_or_cutting_the_body_short_is_refused()
    {
        var layer = peer.Layers[0];
        var good = await File.ReadAllBytesAsync(Flotilla.Services.GetRequiredService<NodeImageStore>().Content.PathOf(layer));
        await using var otherDigest = await BlobServer.StartAsync(good, Digest.Of("x"u8));
        await using var shortBody = await BlobServer.StartAsync(good, layer, cutAfter: good.Length / 2);

        await using var host = new FreshHost();
        using var blobs = new PeerBlobFetcher(host.Store.Content);
        var refused = await Assert.ThrowsAsync<PeerFetchException>(() =>
            blobs.FetchAsync(layer, [otherDigest.Endpoint, shortBody.Endpoint], CancellationToken.None));
        output.WriteLine(refused.Message);
        Assert.Equal(2, refused.Attempts.Count);
        Assert.Contains("announced digest", refused.Attempts[0]);
        Assert.Empty(host.Store.Content.List());
        Assert.Empty(host.IngestLeftovers());
    }

    [Fact]
    public async Task A_64_MiB_blob_crosses_from_peer_to_store_verified_measured()
    {
        var peerStore = Flotilla.Services.GetRequiredService<NodeImageStore>();
        var content = RandomNumberGenerator.GetBytes(64 << 20);
        var digest = (await peerStore.Content.IngestAsync(content, "application/octet-stream")).Digest;
        try
        {
            await using var host = new FreshHost();
            using var blobs = new PeerBlobFetcher(host.Store.Content);
            var started = System.Diagnostics.Stopwatch.StartNew();
            var fetched = await blobs.FetchAsync(digest, [peer.Endpoint], CancellationToken.None);
            var seconds = started.Elapsed.TotalSeconds;
            output.WriteLine($"64 MiB over loopback, hashed and fsynced: {seconds * 1000:F0} ms, {64 / seconds:F0} MiB/s");
            Assert.Equal(content.Length, fetched.Bytes);
            Assert.Equal(content.Length, host.Store.Content.SizeOf(digest));
        }
        finally
        {
            peerStore.Content.Delete(digest);
        }
    }

    /// <summary>A small Kestrel peer that serves the given bytes for any blob, announcing <c>digest</c>.</summary>
    private sealed class BlobServer : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private int _requests;

        private BlobServer(WebApplication app, int port)
        {
            _app = app;
            Endpoint = new PeerEndpoint("liar", $"127.0.0.1:{port}");
        }

        public PeerEndpoint Endpoint { get; }
        public int Requests => Volatile.Read(ref _requests);

        public static async Task<BlobServer> StartAsync(byte[] content, Digest announced, int? cutAfter = null)
        {
            var port = FreePort.Next();
            var builder = WebApplication.CreateSlimBuilder();
            builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
            var app = builder.Build();
            var server = new BlobServer(app, port);
            app.MapGet(PeerBlobEndpoints.BlobsPath + "{digest}", async (HttpContext c) =>
            {
                Interlocked.Increment(ref server._requests);
                c.Response.ContentLength = content.Length;
                c.Response.Headers["Docker-Content-Digest"] = announced.ToString();
                await c.Response.Body.WriteAsync(content.AsMemory(0, cutAfter ?? content.Length));
                if (cutAfter is not null)
                {
                    await c.Response.Body.FlushAsync();
                    c.Abort();
                }
            });
            await app.StartAsync();
            return server;
        }

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }
}
