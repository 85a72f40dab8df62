using Flotilla.Contracts.Wire;
using MessagePack;

namespace Flotilla.Contracts.Containers;

/// <summary>An event in a container's stream (<c>container-&lt;id&gt;</c>).</summary>
[Union(0, typeof(ContainerCreated))]
[Union(1, typeof(ContainerRenamed))]
public interface IContainerEvent : IFlotillaMessage
{
    string ContainerId { get; }
}

[MessagePackObject(true)]
public sealed record ContainerCreated(
    string ContainerId,
    string Name,
    string Image,
    IReadOnlyList<string> Cmd,
    IReadOnlyList<string> Env,
    IReadOnlyDictionary<string, string> Labels,
    DateTimeOffset At) : IContainerEvent;

[MessagePackObject(true)]
public sealed record ContainerRenamed(string ContainerId, string OldName, string NewName, DateTimeOffset At)
    : IContainerEvent;

public static class ContainerStreams
{
    public static string Key(string containerId) => "container-" + containerId;
}
