using System.Collections.Immutable;
using Flotilla.Contracts.Containers;

namespace Flotilla.Cluster.Containers;

/// <summary>What the user asked a container to be.</summary>
public enum DesiredState { None, Created, Running, Stopped, Removed }

/// <summary>A container as its events describe it.</summary>
public sealed record ContainerState(
    string ContainerId,
    bool Exists,
    string Name,
    string Image,
    ImmutableArray<string> Cmd,
    ImmutableArray<string> Env,
    ImmutableDictionary<string, string> Labels,
    DesiredState Desired,
    DateTimeOffset CreatedAt)
{
    public static ContainerState Empty(string containerId) => new(containerId, false, "", "", [], [],
        ImmutableDictionary<string, string>.Empty, DesiredState.None, default);
}

public static class ContainerFold
{
    public static ContainerState Apply(ContainerState state, IContainerEvent e) => e switch
    {
        ContainerCreated c => state with
        {
            Exists = true,
            Name = c.Name,
            Image = c.Image,
            Cmd = [.. c.Cmd],
            Env = [.. c.Env],
            Labels = c.Labels.ToImmutableDictionary(),
            Desired = DesiredState.Created,
            CreatedAt = c.At,
        },
        ContainerRenamed r => state with { Name = r.NewName },
        _ => state,
    };

    public static ContainerState Replay(string containerId, IEnumerable<IContainerEvent> events) =>
        events.Aggregate(ContainerState.Empty(containerId), Apply);
}
