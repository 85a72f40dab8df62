using System.Text;
using Akka.Actor;
using Akka.Hosting;
using Akka.TestKit.Xunit2;
using Flotilla.Cluster.EventStore;
using Flotilla.Cluster.Registry;
using Flotilla.Contracts;
using Flotilla.Contracts.Registry;
using Flotilla.NodeRuntime.Registry;
using Flotilla.NodeRuntime.Storage;
using Flotilla.Tests.Infrastructure;
using Marten;
using Xunit;

namespace Flotilla.Tests.Registry;

/// <summary>
/// Two gateways' registry services over one store and one set of repository entities (as in a cluster): each keeps
/// its own cache of repository views, and a push through one is visible through the other at once.
/// </summary>
[Collection("postgres")]
public class RegistryViewFreshnessSpec(PostgresFixture postgres) : TestKit, IAsyncLifetime
{
    private DocumentStore _store = null!;
    private RegistryBlobStore _blobs = null!;
    private RegistryService _gatewayA = null!;
    private RegistryService _gatewayB = null!;
    private readonly string _root = Path.Combine(Path.GetTempPath(), $"flotilla-regfresh-{Guid.NewGuid():N}");
    private static readonly RequestOrigin Origin = new("alice", "req-fresh");
    private const string Repository = "team/app";

    private sealed class Entities(IActorRef region) : IRequiredActor<RepositoryEntity>
    {
        public IActorRef ActorRef => region;
        public Task<IActorRef> GetAsync(CancellationToken cancellationToken = default) => Task.FromResult(region);
    }

    /// <summary>Stands in for the shard region: one entity per repository, as sharding would give.</summary>
    private sealed class RepositoryRegion : ReceiveActor
    {
        public RepositoryRegion(EntityHost host) =>
            Receive<IWithRepository>(m =>
            {
                var name = Uri.EscapeDataString(m.Repository);
                var child = Context.Child(name);
                if (child.IsNobody()) child = Context.ActorOf(RepositoryEntity.PropsFor(host, m.Repository), name);
                child.Forward(m);
            });
    }

    public async Task InitializeAsync()
    {
        _store = FlotillaStore.Create(await postgres.NewDatabaseAsync("registry_fresh"));
        await _store.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
        var region = Sys.ActorOf(Props.Create(() => new RepositoryRegion(new EntityHost(new MartenEventJournal(_store), "gw", null))));
        _blobs = new RegistryBlobStore(_root);
        _gatewayA = new RegistryService(_store, new Entities(region), _blobs);
        _gatewayB = new RegistryService(_store, new Entities(region), _blobs);
    }

    public Task DisposeAsync()
    {
        _store.Dispose();
        Directory.Delete(_root, recursive: true);
        return Task.CompletedTask;
    }

    private async Task<Descriptor> BlobAsync(RegistryService through, string content)
    {
        var bytes = Encoding.UTF8.GetBytes(content);
        var blob = await _blobs.UploadAsync(Repository, new MemoryStream(bytes), Digest.Of(bytes), bytes.Length);
        await through.LinkBlobAsync(Repository, blob, "upload", Origin);
        return blob;
    }

    private async Task<(Digest Manifest, Descriptor Layer)> PushImageAsync(RegistryService through, string tag, string flavour)
    {
        var config = await BlobAsync(through, $$"""{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"x":"{{flavour}}"}""");
        var layer = await BlobAsync(through, "layer " + flavour);
        var manifest = $$"""{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{{config.Digest}}","size":{{config.Size}}},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{{layer.Digest}}","size":{{layer.Size}}}]}""";
        var (digest, _) = await through.PushManifestAsync(Repository, tag, Encoding.UTF8.GetBytes(manifest), "application/vnd.oci.image.manifest.v1+json", Origin);
        return (digest, layer);
    }

    [Fact]
    public async Task A_push_through_one_gateway_is_seen_through_another_at_once()
    {
        var (first, _) = await PushImageAsync(_gatewayA, "v1", "one");
        // B reads (and caches) the repository as it is now.
        Assert.Equal(first.ToString(), (await _gatewayB.FindManifestAsync(Repository, "v1"))!.Digest);
        Assert.Equal(["v1"], await _gatewayB.TagsAsync(Repository));

        // A moves the tag and adds another, with new blobs; B answers from the store, not its 2 s cache.
        var (second, layer) = await PushImageAsync(_gatewayA, "v1", "two");
        await PushImageAsync(_gatewayA, "v2", "three");
        Assert.Equal(second.ToString(), (await _gatewayB.FindManifestAsync(Repository, "v1"))!.Digest);
        Assert.NotNull(await _gatewayB.FindManifestAsync(Repository, second.ToString()));
        Assert.Equal(["v1", "v2"], await _gatewayB.TagsAsync(Repository));
        Assert.Equal(layer.Size, await _gatewayB.BlobSizeAsync(Repository, layer.Digest));

        // Still nothing for what is not there.
        Assert.Null(await _gatewayB.FindManifestAsync(Repository, "v3"));
        Assert.Null(await _gatewayB.BlobSizeAsync(Repository, Digest.Of("absent"u8)));
    }
}
