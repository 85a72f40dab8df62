using Akka.Actor;
using Akka.Cluster.Sharding;
using Flotilla.Cluster.Containers;
using Flotilla.Cluster.EventStore;
using Flotilla.Contracts;
using Flotilla.Contracts.Images;

namespace Flotilla.Cluster.Images;

/// <summary>One image (keyed by its id, <c>sha256:…</c>): content, references, the nodes it is on.</summary>
public sealed class ImageEntity : EventSourcedEntity<ImageState, IImageEvent>
{
    public const string RegionName = "image";

    public ImageEntity(EntityHost host, string imageId) : base(host, ImageStreams.Key(imageId), ImageState.Empty(imageId))
    {
        ReceiveAsync<RegisterImage>(OnRegister);
        ReceiveAsync<TagImage>(OnTag);
        ReceiveAsync<UntagImage>(OnUntag);
        ReceiveAsync<RemoveImage>(OnRemove);
        ReceiveAsync<RecordImageDistribution>(OnDistribution);
        ReceiveAsync<RecordImageReplica>(OnReplica);
        Receive<GetImage>(_ => Sender.Tell(Snapshot()));
    }

    public static Props PropsFor(EntityHost host, string imageId) => Props.Create(() => new ImageEntity(host, imageId));

    protected override ImageState Apply(ImageState state, IImageEvent e) => ImageFold.Apply(state, e);

    private async Task OnRegister(RegisterImage cmd)
    {
        if (cmd.ImageId != cmd.Content.ConfigDigest)
        {
            Sender.Tell(new CommandRejected(RejectionCode.InvalidArgument,
                $"image id {cmd.ImageId} is not the digest of its config ({cmd.Content.ConfigDigest})"));
            return;
        }
        var now = DateTimeOffset.UtcNow;
        var events = new List<IImageEvent> { new ImageRegistered(cmd.ImageId, cmd.Source, cmd.Content, cmd.Node, cmd.Detail, now) };
        events.AddRange(cmd.References.Distinct().Where(r => !State.RepoTags.Contains(r)).Select(r => new ImageTagged(cmd.ImageId, r, now)));
        await PersistAndAcknowledge(cmd.Origin, events);
    }

    private async Task OnTag(TagImage cmd)
    {
        if (!State.Exists)
        {
            Sender.Tell(new CommandRejected(RejectionCode.NotFound, $"No such image: {cmd.ImageId}"));
            return;
        }
        await PersistAndAcknowledge(cmd.Origin,
            State.RepoTags.Contains(cmd.Reference) ? [] : [new ImageTagged(cmd.ImageId, cmd.Reference, DateTimeOffset.UtcNow)]);
    }

    private async Task OnUntag(UntagImage cmd)
    {
        if (!State.RepoTags.Contains(cmd.Reference))
        {
            Sender.Tell(new CommandRejected(RejectionCode.NotFound, $"No such image: {cmd.Reference}"));
            return;
        }
        await PersistAndAcknowledge(cmd.Origin, [new ImageUntagged(cmd.ImageId, cmd.Reference, cmd.Reason, DateTimeOffset.UtcNow)]);
    }

    private async Task OnRemove(RemoveImage cmd)
    {
        if (!State.Exists)
        {
            Sender.Tell(new CommandRejected(RejectionCode.NotFound, $"No such image: {cmd.ImageId}"));
            return;
        }
        var now = DateTimeOffset.UtcNow;
        var events = State.RepoTags.Select(IImageEvent (t) => new ImageUntagged(cmd.ImageId, t, "image removed", now)).ToList();
        events.Add(new ImageRemoved(cmd.ImageId, now));
        await PersistAndAcknowledge(cmd.Origin, events);
    }

    private async Task OnDistribution(RecordImageDistribution cmd)
    {
        if (!State.Exists)
        {
            Sender.Tell(new CommandRejected(RejectionCode.NotFound, $"No such image: {cmd.ImageId}"));
            return;
        }
        var now = DateTimeOffset.UtcNow;
        IImageEvent e = cmd.Pushed
            ? new ImagePushed(cmd.ImageId, cmd.Reference, cmd.ManifestDigest, cmd.Registry, now)
            : new ImagePulled(cmd.ImageId, cmd.Reference, cmd.ManifestDigest, cmd.Registry, now);
        await PersistAndAcknowledge(cmd.Origin, [e]);
    }

    private async Task OnReplica(RecordImageReplica cmd)
    {
        if (!State.Exists)
        {
            Sender.Tell(new CommandRejected(RejectionCode.NotFound, $"No such image: {cmd.ImageId}"));
            return;
        }
        await PersistAndAcknowledge(cmd.Origin, [new ImageReplicated(cmd.ImageId, cmd.Node, cmd.From, cmd.Bytes, DateTimeOffset.UtcNow)]);
    }

    private async Task PersistAndAcknowledge(RequestOrigin origin, IReadOnlyList<IImageEvent> events)
    {
        var replyTo = Sender;
        if (events.Count == 0)
        {
            replyTo.Tell(new ImageCommandAccepted(State.ImageId, [], Version));
            return;
        }
        if (await PersistAsync(events, origin))
            replyTo.Tell(new ImageCommandAccepted(State.ImageId, events, Version));
    }

    private ImageSnapshot Snapshot() => new(State.ImageId, State.Exists, State.RepoTags, [.. State.Nodes], Version, Host.NodeName);
}

public sealed class ImageMessageExtractor(int maxShards = ShardingDefaults.MaxShards) : HashCodeMessageExtractor(maxShards)
{
    public override string? EntityId(object message) => message switch
    {
        IWithImageId m => m.ImageId,
        _ => null,
    };
}
