using Flotilla.Contracts.Containers;

namespace Flotilla.Cluster.Containers;

/// <summary>
/// How long each hop of a container command waits, derived from what the command asks for: <c>docker stop -t 90</c>
/// waits 90 s for the process before any fixed allowance counts. Each hop outwards (runtime → entity → the caller's
/// ask) waits <see cref="HopMargin"/> longer than the work inside it, so the innermost hop gives up first and its answer
/// in Docker's error shape, not a bare timeout, reaches the client.
/// </summary>
public sealed record CommandTimeouts
{
    /// <summary>Docker's stop grace period when neither the request nor the container names one.</summary>
    public const int DefaultStopSeconds = 10;

    public static CommandTimeouts Default { get; } = new();

    /// <summary>The runtime's own work for one request, beyond a stop's grace period: a signal, KILL, a start, a removal of files.</summary>
    public TimeSpan RuntimeWork { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>What each hop adds over the hop inside it: the entity's appends and the trip through sharding.</summary>
    public TimeSpan HopMargin { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>A grace period in seconds as the runtime applies it (a negative one is no grace: KILL at once).</summary>
    public static TimeSpan Grace(int seconds) => TimeSpan.FromSeconds(Math.Max(0, seconds));

    /// <summary>The entity's ask of the runtime to stop a run after <paramref name="graceSeconds"/>.</summary>
    public TimeSpan RuntimeStop(int graceSeconds) => Grace(graceSeconds) + RuntimeWork;

    /// <summary>
    /// The caller's ask of the entity: the runtime requests the command makes, one after the other, plus a margin.
    /// <paramref name="containerStopSeconds"/> is the container's own stop timeout (<c>--stop-timeout</c>), used when
    /// the command names none.
    /// </summary>
    public TimeSpan Entity(IContainerCommand command, int? containerStopSeconds = null)
    {
        int StopSeconds(int? asked) => asked ?? containerStopSeconds ?? DefaultStopSeconds;
        var work = command switch
        {
            StopContainer stop => RuntimeStop(StopSeconds(stop.TimeoutSeconds)),
            // Unpause (when paused), stop, start.
            RestartContainer restart => RuntimeWork + RuntimeStop(StopSeconds(restart.TimeoutSeconds)) + RuntimeWork,
            // KILL, then the files.
            RemoveContainer { Force: true } => RuntimeStop(0) + RuntimeWork,
            // At most one runtime request (start, kill, pause, remove files), or none.
            _ => RuntimeWork,
        };
        return work + HopMargin;
    }

    /// <summary>Whether <see cref="Entity"/> needs the container's own stop timeout (the command names none).</summary>
    public static bool NeedsContainerStopTimeout(IContainerCommand command) =>
        command is StopContainer { TimeoutSeconds: null } or RestartContainer { TimeoutSeconds: null };
}

/// <summary>No answer within the time a command was given: it may still complete.</summary>
public sealed class CommandTimeoutException(string message) : TimeoutException(message);
