using Akka.Actor;
using Akka.Event;
using Flotilla.Cluster.EventStore;
using Flotilla.Contracts;
using Flotilla.Contracts.Containers;

namespace Flotilla.Cluster.Containers;

/// <summary>One container: validates commands against its state and persists what follows.</summary>
public sealed class ContainerEntity : EventSourcedEntity<ContainerState, IContainerEvent>
{
    public const string RegionName = "container";

    public ContainerEntity(EntityHost host, string containerId)
        : base(host, ContainerStreams.Key(containerId), ContainerState.Empty(containerId))
    {
        ReceiveAsync<CreateContainer>(OnCreate);
        ReceiveAsync<RenameContainer>(OnRename);
        Receive<GetContainer>(_ => Sender.Tell(Snapshot()));
        Receive<ReconcileContainer>(m => Reconcile(m.Reason));
    }

    public static Props PropsFor(EntityHost host, string containerId) => Props.Create(() => new ContainerEntity(host, containerId));

    protected override ContainerState Apply(ContainerState state, IContainerEvent e) => ContainerFold.Apply(state, e);

    private async Task OnCreate(CreateContainer cmd)
    {
        if (State.Exists)
        {
            Sender.Tell(new CommandRejected(RejectionCode.Conflict, $"container {cmd.ContainerId} already exists"));
            return;
        }
        if (string.IsNullOrWhiteSpace(cmd.Image))
        {
            Sender.Tell(new CommandRejected(RejectionCode.InvalidArgument, "image must not be empty"));
            return;
        }
        await PersistAndAcknowledge(cmd.Origin,
            new ContainerCreated(cmd.ContainerId, cmd.Name, cmd.Image, cmd.Cmd, cmd.Env, cmd.Labels, DateTimeOffset.UtcNow));
    }

    private async Task OnRename(RenameContainer cmd)
    {
        if (!State.Exists)
        {
            Sender.Tell(new CommandRejected(RejectionCode.NotFound, $"No such container: {cmd.ContainerId}"));
            return;
        }
        if (State.Name == cmd.NewName)
        {
            Sender.Tell(new ContainerCommandAccepted(cmd.ContainerId, [], Version));
            return;
        }
        await PersistAndAcknowledge(cmd.Origin,
            new ContainerRenamed(cmd.ContainerId, State.Name, cmd.NewName, DateTimeOffset.UtcNow));
    }

    protected override void OnRecovered()
    {
        if (State.Exists) Log.Debug("{0} recovered at version {1} on {2}", StreamKey, Version, Host.NodeName);
    }

    /// <summary>
    /// Desired vs observed. Until containers run on a host there is nothing observed to compare, so
    /// being started (and so replaying the stream) is the whole of it.
    /// </summary>
    private void Reconcile(string reason) =>
        Log.Info("{0} reconciling ({1}): desired {2}", StreamKey, reason, State.Desired);

    private async Task PersistAndAcknowledge(RequestOrigin origin, params IContainerEvent[] events)
    {
        var replyTo = Sender;
        if (await PersistAsync(events, origin))
            replyTo.Tell(new ContainerCommandAccepted(State.ContainerId, events, Version));
    }

    private ContainerSnapshot Snapshot() => new(State.ContainerId, State.Exists, State.Name, State.Image, State.Cmd,
        State.Env, State.Labels, State.CreatedAt, Version, Host.NodeName);
}
