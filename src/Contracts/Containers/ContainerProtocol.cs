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

/// <summary>Creates the container on <paramref name="Node"/>; <paramref name="Placement"/> says how the scheduler chose it.</summary>
[MessagePackObject(true)]
public sealed record CreateContainer(string ContainerId, string Name, ContainerDefinition Definition, string Node, RequestOrigin Origin,
    PlacementDecision? Placement = null) : IContainerCommand;

/// <summary>
/// Moves the container off <paramref name="From"/> to <paramref name="To"/> (sent by the scheduler). Ignored unless the
/// container is still on <paramref name="From"/>. <paramref name="FromAlive"/>: the old host still runs (a drain), so
/// the current run is stopped there first; otherwise the host is gone and so is the run — proven by
/// <paramref name="ExpiredEpoch"/>, the old host's lease epoch that has expired: a run started under a later epoch
/// (the host came back) is not moved.
/// </summary>
[MessagePackObject(true)]
public sealed record RescheduleContainer(string ContainerId, string From, string To, bool FromAlive, string Reason, RequestOrigin Origin,
    long? ExpiredEpoch = null) : IContainerCommand;

/// <summary>The container's host is gone and it stays unplaced (see <see cref="ContainerNodeLost"/>).</summary>
[MessagePackObject(true)]
public sealed record MarkContainerNodeLost(string ContainerId, string Node, string Reason, RequestOrigin Origin) : IContainerCommand;

[MessagePackObject(true)]
public sealed record StartContainer(string ContainerId, RequestOrigin Origin) : IContainerCommand;

/// <summary>Stops the process (signal, then KILL after the timeout) and keeps the container stopped.</summary>
[MessagePackObject(true)]
public sealed record StopContainer(string ContainerId, int? TimeoutSeconds, Signal? Signal, RequestOrigin Origin) : IContainerCommand;

[MessagePackObject(true)]
public sealed record KillContainer(string ContainerId, Signal Signal, RequestOrigin Origin) : IContainerCommand;

[MessagePackObject(true)]
public sealed record RestartContainer(string ContainerId, int? TimeoutSeconds, RequestOrigin Origin) : IContainerCommand;

[MessagePackObject(true)]
public sealed record PauseContainer(string ContainerId, RequestOrigin Origin) : IContainerCommand;

[MessagePackObject(true)]
public sealed record UnpauseContainer(string ContainerId, RequestOrigin Origin) : IContainerCommand;

[MessagePackObject(true)]
public sealed record RenameContainer(string ContainerId, string NewName, RequestOrigin Origin) : IContainerCommand;

[MessagePackObject(true)]
public sealed record RemoveContainer(string ContainerId, bool Force, RequestOrigin Origin) : IContainerCommand;

/// <summary>Records that an exec began in the running container.</summary>
[MessagePackObject(true)]
public sealed record RecordContainerExec(string ContainerId, string ExecId, IReadOnlyList<string> Command, string User, bool Tty,
    RequestOrigin Origin) : IContainerCommand;

[MessagePackObject(true)]
public sealed record RecordContainerCommit(string ContainerId, string ImageId, string? Reference, RequestOrigin Origin) : IContainerCommand;

[MessagePackObject(true)]
public sealed record RecordContainerExport(string ContainerId, RequestOrigin Origin) : IContainerCommand;

/// <summary>Waits for the container to meet <paramref name="Condition"/>; answered with <see cref="ContainerWaitResult"/>.</summary>
[MessagePackObject(true)]
public sealed record WaitForContainer(string ContainerId, WaitCondition Condition) : IWithContainerId;

[MessagePackObject(true)]
public sealed record ContainerWaitResult(string ContainerId, int StatusCode, string? Error) : IFlotillaMessage;

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
    ContainerDefinition? Definition,
    string Node,
    ContainerStatus Status,
    string Desired,
    int Pid,
    int ExitCode,
    bool OomKilled,
    string Error,
    long Generation,
    int RestartCount,
    DateTimeOffset CreatedAt,
    DateTimeOffset? StartedAt,
    DateTimeOffset? FinishedAt,
    IReadOnlyList<string> ExecIds,
    long Version,
    string HostedOn) : IFlotillaMessage
{
    /// <summary>Docker's <c>State.Health</c>; null = no healthcheck.</summary>
    public ContainerHealth? Health { get; init; }
}

/// <summary>A command was carried out; the events it produced, in order.</summary>
[MessagePackObject(true)]
public sealed record ContainerCommandAccepted(string ContainerId, IReadOnlyList<IContainerEvent> Events, long Version)
    : IFlotillaMessage;
