using Akka.Actor;
using Flotilla.Cluster.Queries;

namespace Flotilla.Cluster.Containers;

/// <summary>Finds the runtime actor (<c>/user/runtime</c>) of a node by name, through the node table.</summary>
public interface IRuntimeDirectory
{
    Task<ActorSelection?> RuntimeOfAsync(string node, CancellationToken cancellationToken = default);
}

/// <remarks>The actor system is resolved on first use: entities are built while it is being created.</remarks>
public sealed class RuntimeDirectory(Func<ActorSystem> system, ClusterQueries queries) : IRuntimeDirectory
{
    public const string RuntimeActorName = "runtime";

    public async Task<ActorSelection?> RuntimeOfAsync(string node, CancellationToken cancellationToken = default)
    {
        var view = (await queries.NodesAsync(cancellationToken)).FirstOrDefault(n => n.Name == node);
        if (view is null || view.Status != Nodes.NodeStatus.Ready) return null;
        return system().ActorSelection($"{view.Address}/user/{RuntimeActorName}");
    }
}
