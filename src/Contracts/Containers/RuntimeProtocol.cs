using Flotilla.Contracts.Wire;
using MessagePack;

namespace Flotilla.Contracts.Containers;

/// <summary>
/// Between a container's entity and the runtime actor of the node it is placed on. Every request
/// carries the run generation: a runtime acts only for the generation it is given and reports with it.
/// </summary>
public interface IRuntimeMessage : IFlotillaMessage
{
    string ContainerId { get; }
}

/// <summary>Prepare the rootfs and bundle, and start run <paramref name="Generation"/>.</summary>
[MessagePackObject(true)]
public sealed record RunContainerProcess(string ContainerId, string Name, long Generation, ContainerDefinition Definition) : IRuntimeMessage;

/// <summary>The run started, under the host's lease epoch <paramref name="Epoch"/> (its fencing token; 0 without leases).</summary>
[MessagePackObject(true)]
public sealed record ContainerProcessStarted(string ContainerId, long Generation, int Pid, DateTimeOffset At, long Epoch = 0) : IRuntimeMessage;

[MessagePackObject(true)]
public sealed record ContainerProcessFailed(string ContainerId, long Generation, string Error, int ExitCode) : IRuntimeMessage;

/// <summary>Send a signal to the container's main process.</summary>
[MessagePackObject(true)]
public sealed record SignalContainerProcess(string ContainerId, long Generation, Signal Signal) : IRuntimeMessage;

/// <summary>Signal, wait up to the timeout, then KILL; answered with <see cref="ContainerProcessExited"/>.</summary>
[MessagePackObject(true)]
public sealed record StopContainerProcess(string ContainerId, long Generation, Signal Signal, int TimeoutSeconds) : IRuntimeMessage;

[MessagePackObject(true)]
public sealed record PauseContainerProcess(string ContainerId, long Generation, bool Pause) : IRuntimeMessage;

/// <summary>Delete the runtime state, unmount and drop the writable layer.</summary>
[MessagePackObject(true)]
public sealed record RemoveContainerFiles(string ContainerId) : IRuntimeMessage;

/// <summary>The process of a run ended (sent by the runtime to the entity, also after a restart of the node).</summary>
[MessagePackObject(true)]
public sealed record ContainerProcessExited(string ContainerId, long Generation, int ExitCode, bool OomKilled, DateTimeOffset At)
    : IRuntimeMessage, IWithContainerId;

/// <summary>The runtime did what was asked (pause, signal, remove).</summary>
[MessagePackObject(true)]
public sealed record RuntimeDone(string ContainerId) : IRuntimeMessage;

/// <summary>The runtime could not do what was asked.</summary>
[MessagePackObject(true)]
public sealed record RuntimeFailed(string ContainerId, string Error) : IRuntimeMessage;
