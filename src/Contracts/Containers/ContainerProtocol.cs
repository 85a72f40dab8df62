using Flotilla.Contracts.Wire;
using MessagePack;

namespace Flotilla.Contracts.Containers;

/// <summary>A message addressed to one <c>ContainerEntity</c>.</summary>
public interface IWithContainerId : IFlotillaMessage
{
    string ContainerId { get; }
}

/// <summary>A command that may change a container; carries who asked.</summary>
public interface IContainerCommand : IWithContainerId
{
    RequestOrigin Origin { get; }
}

[MessagePackObject(true)]
public sealed record CreateContainer(
    string ContainerId,
    string Name,
    string Image,
    IReadOnlyList<string> Cmd,
    IReadOnlyList<string> Env,
    IReadOnlyDictionary<string, string> Labels,
    RequestOrigin Origin) : IContainerCommand;

[MessagePackObject(true)]
public sealed record RenameContainer(string ContainerId, string NewName, RequestOrigin Origin) : IContainerCommand;

/// <summary>
/// Wakes a container's entity so it compares desired and observed state and acts. Sent after a
/// full-cluster restart for every container whose desired state is running: remembered entities
/// do not survive that, the event store does.
/// </summary>
[MessagePackObject(true)]
public sealed record ReconcileContainer(string ContainerId, string Reason) : IWithContainerId;

/// <summary>Asks for the entity's current state; answered with <see cref="ContainerSnapshot"/>.</summary>
[MessagePackObject(true)]
public sealed record GetContainer(string ContainerId) : IWithContainerId;

/// <summary>The state of a container as its entity knows it, with the stream version.</summary>
[MessagePackObject(true)]
public sealed record ContainerSnapshot(
    string ContainerId,
    bool Exists,
    string Name,
    string Image,
    IReadOnlyList<string> Cmd,
    IReadOnlyList<string> Env,
    IReadOnlyDictionary<string, string> Labels,
    DateTimeOffset CreatedAt,
    long Version,
    string HostedOn) : IFlotillaMessage;

/// <summary>A command was carried out; the events it produced, in order.</summary>
[MessagePackObject(true)]
public sealed record ContainerCommandAccepted(string ContainerId, IReadOnlyList<IContainerEvent> Events, long Version)
    : IFlotillaMessage;
