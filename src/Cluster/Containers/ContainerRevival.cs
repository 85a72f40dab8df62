using Akka.Actor;
using Akka.Event;
using Flotilla.Cluster.Queries;
using Flotilla.Contracts.Containers;

namespace Flotilla.Cluster.Containers;

/// <summary>
/// Cluster singleton: when the cluster (re)starts, wakes every container whose desired state is
/// running, read from the container projection. This replaces Akka's remember-entities, whose
/// storage does not survive a full-cluster restart.
/// </summary>
public sealed class ContainerRevival : ReceiveActor
{
    public const string SingletonName = "container-revival";

    public ContainerRevival(ClusterQueries queries, IActorRef containers)
    {
        var log = Context.GetLogger();
        ReceiveAsync<Start>(async _ =>
        {
            var wanted = await queries.ContainersDesiredRunningAsync();
            foreach (var c in wanted)
                containers.Tell(new ReconcileContainer(c.ContainerId, "cluster started"));
            log.Info("Woke {0} container(s) whose desired state is running", wanted.Count);
        });
    }

    private sealed record Start;

    public static Props PropsFor(ClusterQueries queries, IActorRef containers) =>
        Props.Create(() => new ContainerRevival(queries, containers));

    protected override void PreStart() => Self.Tell(new Start());
}
