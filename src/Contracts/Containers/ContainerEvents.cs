using Flotilla.Contracts.Wire;
using MessagePack;

namespace Flotilla.Contracts.Containers;

/// <summary>An event in a container's stream (<c>container-&lt;id&gt;</c>).</summary>
[Union(0, typeof(ContainerCreated))]
[Union(1, typeof(ContainerRenamed))]
[Union(2, typeof(ContainerStarted))]
[Union(3, typeof(ContainerStartFailed))]
[Union(4, typeof(ContainerExited))]
[Union(5, typeof(ContainerStopped))]
[Union(6, typeof(ContainerKilled))]
[Union(7, typeof(ContainerRestarted))]
[Union(8, typeof(ContainerPaused))]
[Union(9, typeof(ContainerUnpaused))]
[Union(10, typeof(ContainerExecStarted))]
[Union(11, typeof(ContainerCommitted))]
[Union(12, typeof(ContainerExported))]
[Union(13, typeof(ContainerRemoved))]
[Union(14, typeof(ContainerPlaced))]
[Union(15, typeof(ContainerRescheduled))]
[Union(16, typeof(ContainerNodeLost))]
[Union(17, typeof(ContainerHealthChanged))]
public interface IContainerEvent : IFlotillaMessage
{
    string ContainerId { get; }
}

/// <summary>The container exists on <paramref name="Node"/> with its definition; nothing runs yet.</summary>
[MessagePackObject(true)]
public sealed record ContainerCreated(string ContainerId, string Name, ContainerDefinition Definition, string Node, DateTimeOffset At)
    : IContainerEvent;

[MessagePackObject(true)]
public sealed record ContainerRenamed(string ContainerId, string OldName, string NewName, DateTimeOffset At) : IContainerEvent;

/// <summary>
/// Run <paramref name="Generation"/> began: the process is <paramref name="Pid"/> on <paramref name="Node"/>, under that
/// host's lease epoch <paramref name="Epoch"/> (0: a host without leases).
/// </summary>
[MessagePackObject(true)]
public sealed record ContainerStarted(string ContainerId, long Generation, string Node, int Pid, DateTimeOffset At, long Epoch = 0) : IContainerEvent;

/// <summary>The runtime could not start run <paramref name="Generation"/>.</summary>
[MessagePackObject(true)]
public sealed record ContainerStartFailed(string ContainerId, long Generation, string Error, int ExitCode, DateTimeOffset At)
    : IContainerEvent;

/// <summary>The process of run <paramref name="Generation"/> ended.</summary>
[MessagePackObject(true)]
public sealed record ContainerExited(string ContainerId, long Generation, int ExitCode, bool OomKilled, DateTimeOffset At)
    : IContainerEvent;

/// <summary>A user stopped the container: it stays stopped, whatever its restart policy.</summary>
[MessagePackObject(true)]
public sealed record ContainerStopped(string ContainerId, Signal Signal, int TimeoutSeconds, DateTimeOffset At) : IContainerEvent;

[MessagePackObject(true)]
public sealed record ContainerKilled(string ContainerId, Signal Signal, DateTimeOffset At) : IContainerEvent;

/// <summary>A restart began (by the user, or by the restart policy after an exit).</summary>
[MessagePackObject(true)]
public sealed record ContainerRestarted(string ContainerId, string Reason, int RestartCount, DateTimeOffset At) : IContainerEvent;

[MessagePackObject(true)]
public sealed record ContainerPaused(string ContainerId, DateTimeOffset At) : IContainerEvent;

[MessagePackObject(true)]
public sealed record ContainerUnpaused(string ContainerId, DateTimeOffset At) : IContainerEvent;

[MessagePackObject(true)]
public sealed record ContainerExecStarted(string ContainerId, string ExecId, IReadOnlyList<string> Command, string User, bool Tty,
    DateTimeOffset At) : IContainerEvent;

[MessagePackObject(true)]
public sealed record ContainerCommitted(string ContainerId, string ImageId, string? Reference, DateTimeOffset At) : IContainerEvent;

[MessagePackObject(true)]
public sealed record ContainerExported(string ContainerId, DateTimeOffset At) : IContainerEvent;

[MessagePackObject(true)]
public sealed record ContainerRemoved(string ContainerId, DateTimeOffset At) : IContainerEvent;

public static class ContainerStreams
{
    public static string Key(string containerId) => "container-" + containerId;
}

/// <summary>
/// The scheduler chose <paramref name="Node"/> for the container, with its strategy and why (free resources,
/// constraints): the audit trail of every placement.
/// </summary>
[MessagePackObject(true)]
public sealed record ContainerPlaced(string ContainerId, string Node, string Strategy, string Reason, DateTimeOffset At) : IContainerEvent;

/// <summary>
/// The container moved from <paramref name="From"/> to <paramref name="To"/> (its host died or was drained); it
/// starts there from its image, the writable layer of the old host is not carried over. <paramref name="FencingEpoch"/>:
/// the old host's lease epoch whose expiry allowed the move (null for a drain, where the old run was stopped first).
/// </summary>
[MessagePackObject(true)]
public sealed record ContainerRescheduled(string ContainerId, string From, string To, string Reason, DateTimeOffset At, long? FencingEpoch = null) : IContainerEvent;

/// <summary>
/// The container's host left the cluster while run <paramref name="Generation"/> was on it and it is not moved
/// (its restart policy is <c>no</c>, or no other host fits): that run is over.
/// </summary>
[MessagePackObject(true)]
public sealed record ContainerNodeLost(string ContainerId, string Node, long Generation, string Reason, DateTimeOffset At) : IContainerEvent;

/// <summary>
/// A probe of run <paramref name="Generation"/> changed the container's health to <paramref name="Status"/> (Docker's
/// <c>health_status</c> event); <paramref name="Probe"/> is the result that changed it. Only changes are recorded: the
/// probes between them live in the entity's memory (inspect's log), as dockerd keeps them.
/// </summary>
[MessagePackObject(true)]
public sealed record ContainerHealthChanged(string ContainerId, long Generation, HealthStatus Status, int FailingStreak, HealthcheckResult Probe,
    DateTimeOffset At) : IContainerEvent;
