using Akka.Actor;
using Flotilla.Contracts.Containers;

namespace Flotilla.NodeRuntime;

/// <summary>
/// Who may give the runtime actor work: only the container entity the request names, that is an actor at
/// <c>/system/sharding/&lt;region&gt;/&lt;shard&gt;/&lt;container id&gt;</c> (or a child of it: the entity asks
/// through short-lived children, <c>RuntimeAsker</c>) in this actor system or in a cluster member with the
/// <c>node</c> role. Entities live only on node members, so a gateway, a foreign actor system that reached the
/// transport, an <c>Ask</c> from anywhere (those come from <c>/temp</c>) or an entity acting for another
/// container are refused. This is the in-process half: which systems may connect at all is the transport's
/// (mutually authenticated TLS).
/// </summary>
/// <param name="ContainerRegion">The container shard region's type name (the path element after <c>sharding</c>).</param>
/// <param name="IsNodeMember">Whether a remote address is a current cluster member with the node role.</param>
public sealed record RuntimeCallerPolicy(string ContainerRegion, Func<Address, bool> IsNodeMember)
{
    /// <summary>Null when <paramref name="sender"/> may act for <paramref name="containerId"/>, else why not.</summary>
    public string? Refusal(IActorRef sender, string? containerId)
    {
        if (!ContainerIds.IsValid(containerId)) return "invalid container id";
        if (sender.IsNobody()) return "no sender";
        var path = sender.Path;
        var e = path.Elements;
        if (e.Count < 5 || e[0] != "system" || e[1] != "sharding" || e[2] != ContainerRegion || e[4] != containerId)
            return $"the sender is not the container entity of {containerId![..12]}";
        if (!path.Address.HasLocalScope && !IsNodeMember(path.Address)) return "the sender is not in a node member of this cluster";
        return null;
    }
}
