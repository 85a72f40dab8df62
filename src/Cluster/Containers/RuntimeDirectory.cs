using Akka.Actor;
using Flotilla.Cluster.Queries;

namespace Flotilla.Cluster.Containers;

/// <summary>Finds the runtime actor (<c>/user/runtime</c>) of a node by name, through the node table.</summary>
public interface IRuntimeDirectory
{
    Task<ActorSelection?> RuntimeOfAsync(string node, CancellationToken cancellationToken = default);
}

/// <remarks>The actor system is resolved on first use: entities are built while it is being created.</remarks>
/// <remarks>
/// This process's own runtime is found without the node table: right after a restart the node's
/// NodeJoined may not be recorded yet, and re-adopted exits must still be able to restart containers.
/// </remarks>
public sealed class RuntimeDirectory(Func<ActorSystem> system, ClusterQueries queries, string localNode) : IRuntimeDirectory
{
    public const string RuntimeActorName = "runtime";

    public async Task<ActorSelection?> RuntimeOfAsync(string node, CancellationToken cancellationToken = default)
    {
        if (node == localNode) return system().ActorSelection($"/user/{RuntimeActorName}");
        var view = (await queries.NodesAsync(cancellationToken)).FirstOrDefault(n => n.Name == node);
        if (view is null || view.Status != Nodes.NodeStatus.Ready) return null;
        return system().ActorSelection($"{view.Address}/user/{RuntimeActorName}");
    }
}
