using Akka.Actor;
using Akka.Cluster.Sharding;
using Flotilla.Cluster.Containers;
using Flotilla.Cluster.EventStore;
using Flotilla.Contracts;
using Flotilla.Contracts.Registry;

namespace Flotilla.Cluster.Registry;

/// <summary>
/// One registry repository (keyed by its name): which blobs are linked into it, its manifests and tags.
/// It decides what a push, tag or delete does to the repository; the bytes themselves never pass
/// through it (the gateway streams them to the registry content store).
/// </summary>
public sealed class RepositoryEntity : EventSourcedEntity<RepositoryState, IRepositoryEvent>
{
    public const string RegionName = "repository";

    public RepositoryEntity(EntityHost host, string repository)
        : base(host, RepositoryStreams.Key(repository), RepositoryState.Empty(repository))
    {
        ReceiveAsync<LinkBlob>(OnLink);
        ReceiveAsync<UnlinkBlob>(OnUnlink);
        ReceiveAsync<PushManifest>(OnPush);
        ReceiveAsync<DeleteTag>(OnDeleteTag);
        ReceiveAsync<DeleteManifest>(OnDeleteManifest);
    }

    public static Props PropsFor(EntityHost host, string repository) => Props.Create(() => new RepositoryEntity(host, repository));

    protected override RepositoryState Apply(RepositoryState state, IRepositoryEvent e) => RepositoryFold.Apply(state, e);

    private Task OnLink(LinkBlob cmd) =>
        PersistAndAcknowledge(cmd.Origin,
            State.Blobs.ContainsKey(cmd.Digest) ? [] : [new BlobLinked(cmd.Repository, cmd.Digest, cmd.Size, cmd.Via, DateTimeOffset.UtcNow)]);

    private async Task OnUnlink(UnlinkBlob cmd)
    {
        if (!State.Blobs.ContainsKey(cmd.Digest))
        {
            Reject(RegistryErrorCodes.BlobUnknown, "blob unknown to registry", cmd.Digest);
            return;
        }
        await PersistAndAcknowledge(cmd.Origin, [new BlobUnlinked(cmd.Repository, cmd.Digest, DateTimeOffset.UtcNow)]);
    }

    private async Task OnPush(PushManifest cmd)
    {
        // Blobs must have been uploaded or mounted into this repository; an index's children pushed to it.
        if (cmd.References.FirstOrDefault(d => !State.Blobs.ContainsKey(d) && !State.Manifests.ContainsKey(d)) is { } missingBlob)
        {
            Reject(RegistryErrorCodes.ManifestBlobUnknown, "blob unknown to registry", missingBlob);
            return;
        }
        if (cmd.Children.FirstOrDefault(d => !State.Manifests.ContainsKey(d)) is { } missingChild)
        {
            Reject(RegistryErrorCodes.ManifestBlobUnknown, "manifest unknown to repository", missingChild);
            return;
        }
        var now = DateTimeOffset.UtcNow;
        var events = new List<IRepositoryEvent>();
        if (!State.Manifests.ContainsKey(cmd.Digest))
            events.Add(new ManifestPushed(cmd.Repository, cmd.Digest, cmd.MediaType, cmd.Size, cmd.Subject, cmd.ArtifactType, cmd.Annotations,
                cmd.References, cmd.Children, now));
        if (cmd.Tag is { } tag)
        {
            var previous = State.Tags.GetValueOrDefault(tag);
            if (previous != cmd.Digest) events.Add(new ManifestTagged(cmd.Repository, tag, cmd.Digest, previous, now));
        }
        await PersistAndAcknowledge(cmd.Origin, events);
    }

    private async Task OnDeleteTag(DeleteTag cmd)
    {
        if (!State.Tags.TryGetValue(cmd.Tag, out var digest))
        {
            Reject(RegistryErrorCodes.ManifestUnknown, "manifest unknown", cmd.Tag);
            return;
        }
        await PersistAndAcknowledge(cmd.Origin, [new TagDeleted(cmd.Repository, cmd.Tag, digest, DateTimeOffset.UtcNow)]);
    }

    private async Task OnDeleteManifest(DeleteManifest cmd)
    {
        if (!State.Manifests.ContainsKey(cmd.Digest))
        {
            Reject(RegistryErrorCodes.ManifestUnknown, "manifest unknown", cmd.Digest);
            return;
        }
        var now = DateTimeOffset.UtcNow;
        var events = State.TagsOf(cmd.Digest).Select(IRepositoryEvent (t) => new TagDeleted(cmd.Repository, t, cmd.Digest, now)).ToList();
        events.Add(new ManifestDeleted(cmd.Repository, cmd.Digest, now));
        await PersistAndAcknowledge(cmd.Origin, events);
    }

    private void Reject(string code, string message, string? detail) =>
        Sender.Tell(new RepositoryCommandRejected(State.Repository, code, message, detail));

    private async Task PersistAndAcknowledge(RequestOrigin origin, IReadOnlyList<IRepositoryEvent> events)
    {
        var replyTo = Sender;
        if (events.Count == 0)
        {
            replyTo.Tell(new RepositoryCommandAccepted(State.Repository, [], Version));
            return;
        }
        if (await PersistAsync(events, origin))
            replyTo.Tell(new RepositoryCommandAccepted(State.Repository, events, Version));
    }
}

public sealed class RepositoryMessageExtractor(int maxShards = ShardingDefaults.MaxShards) : HashCodeMessageExtractor(maxShards)
{
    public override string? EntityId(object message) => message switch
    {
        IWithRepository m => m.Repository,
        _ => null,
    };
}
