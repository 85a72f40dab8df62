using Akka.Cluster.Sharding;
using Flotilla.Contracts.Containers;

namespace Flotilla.Cluster.Containers;

/// <summary>Routes <see cref="IWithContainerId"/> messages to their entity; shards by a stable hash of the id.</summary>
public sealed class ContainerMessageExtractor(int maxShards = ShardingDefaults.MaxShards) : HashCodeMessageExtractor(maxShards)
{
    public override string? EntityId(object message) => message switch
    {
        IWithContainerId m => m.ContainerId,
        _ => null,
    };
}

public static class ShardingDefaults
{
    /// <summary>About ten times the largest node count we plan for, as Akka's docs advise.</summary>
    public const int MaxShards = 100;
}
