using System.Reflection;
using Flotilla.Contracts.Containers;
using MessagePack;

namespace Flotilla.Cluster.Containers;

/// <summary>Every container event type: the wire union of <see cref="IContainerEvent"/>, the one list of them.</summary>
public static class ContainerEventTypes
{
    public static readonly IReadOnlyList<Type> All =
        [.. typeof(IContainerEvent).GetCustomAttributes<UnionAttribute>().Select(u => u.SubType)];
}
