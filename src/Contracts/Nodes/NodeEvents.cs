using Flotilla.Contracts.Wire;
using MessagePack;

namespace Flotilla.Contracts.Nodes;

/// <summary>An event in a node's stream (<c>node-&lt;name&gt;</c>).</summary>
[Union(0, typeof(NodeJoined))]
[Union(1, typeof(NodeLeft))]
[Union(2, typeof(NodeDrained))]
[Union(3, typeof(NodeActivated))]
[Union(4, typeof(HostLeaseAcquired))]
[Union(5, typeof(HostLeaseExpired))]
[Union(6, typeof(ContainersFenced))]
public interface INodeEvent : IFlotillaMessage
{
    string Name { get; }
}

/// <summary>
/// A host started and registered itself with its capacity. <paramref name="ApiEndpoint"/> is the
/// <c>host:port</c> of its HTTP listener (Docker API for its own containers, peer blob endpoints); empty when none.
/// <paramref name="VolumeRoot"/>: the directory its local volumes live in (<c>&lt;data&gt;/volumes</c>); empty on a gateway.
/// </summary>
[MessagePackObject(true)]
public sealed record NodeJoined(
    string Name,
    string Hostname,
    string Address,
    IReadOnlyList<string> Roles,
    int Cpus,
    long MemoryBytes,
    string Kernel,
    string OciRuntime,
    IReadOnlyDictionary<string, string> Labels,
    DateTimeOffset At,
    string ApiEndpoint = "",
    string VolumeRoot = "") : INodeEvent;

/// <summary>A host left the cluster: a graceful stop, or removed by the cluster.</summary>
[MessagePackObject(true)]
public sealed record NodeLeft(string Name, string Reason, DateTimeOffset At) : INodeEvent;

/// <summary>The node takes no new containers and its containers are moved off (<c>flotilla node drain</c>).</summary>
[MessagePackObject(true)]
public sealed record NodeDrained(string Name, string User, DateTimeOffset At) : INodeEvent;

/// <summary>The node takes containers again (<c>flotilla node activate</c>).</summary>
[MessagePackObject(true)]
public sealed record NodeActivated(string Name, string User, DateTimeOffset At) : INodeEvent;

/// <summary>
/// An engine took its host's lease (see docs/ARCHITECTURE.md, "Never twice"). <paramref name="Continued"/>: the
/// previous engine's lease was still valid, so its containers are kept (re-adoption); otherwise
/// <paramref name="PreviousEpoch"/>'s runs are fenced.
/// </summary>
[MessagePackObject(true)]
public sealed record HostLeaseAcquired(string Name, long Epoch, bool Continued, long? PreviousEpoch, DateTimeOffset ExpiresAt, DateTimeOffset At) : INodeEvent;

/// <summary>The lease of <paramref name="Epoch"/> expired (database time): no run of it may go on; its containers may be started elsewhere.</summary>
[MessagePackObject(true)]
public sealed record HostLeaseExpired(string Name, long Epoch, DateTimeOffset ExpiredAt, DateTimeOffset At) : INodeEvent;

/// <summary>
/// The host's containers were killed because its lease was not confirmed: by the host's watchdog
/// (<paramref name="By"/> <c>watchdog</c>, recorded when the engine is back), or by the engine itself on losing the lease.
/// </summary>
[MessagePackObject(true)]
public sealed record ContainersFenced(string Name, long Epoch, IReadOnlyList<string> ContainerIds, string By, string Reason, DateTimeOffset At) : INodeEvent;

public static class NodeStreams
{
    public static string Key(string nodeName) => "node-" + nodeName;
}

/// <summary>
/// A node's runtime actor refused a request that did not come from the container entity it names (a foreign or
/// non-node actor system, any other actor) or that named an invalid container id. Stored in
/// <c>runtime-access-&lt;node&gt;</c>; the metadata user is <c>system</c>, the sender is in the body.
/// </summary>
[MessagePackObject(true)]
public sealed record RuntimeRequestRefused(string Node, string Sender, string Request, string ContainerId, string Reason, DateTimeOffset At,
    int Repeats = 0);

public static class RuntimeAccessStreams
{
    public static string Key(string node) => "runtime-access-" + node;
}
