using System.Collections.Immutable;
using Flotilla.Contracts.Containers;

namespace Flotilla.Cluster.Containers;

/// <summary>What the user asked a container to be.</summary>
public enum DesiredState { None, Created, Running, Stopped, Removed }

/// <summary>
/// A container as its events describe it: desired state (what the user asked) apart from observed
/// state (what the runtime reported), and the run generation that ties reports to a start.
/// </summary>
public sealed record ContainerState(
    string ContainerId,
    bool Exists,
    string Name,
    ContainerDefinition? Definition,
    string Node,
    DesiredState Desired,
    ContainerStatus Status,
    int Pid,
    int ExitCode,
    bool OomKilled,
    string Error,
    long Generation,
    int RestartCount,
    DateTimeOffset CreatedAt,
    DateTimeOffset? StartedAt,
    DateTimeOffset? FinishedAt,
    ImmutableList<string> ExecIds)
{
    /// <summary>The lease epoch of the host the current (or last) run started under: its fencing token.</summary>
    public long RunEpoch { get; init; }

    /// <summary>Docker's <c>State.Health</c> as the events imply it; null = no healthcheck (<c>none</c>). See <see cref="ContainerHealthFold"/>.</summary>
    public ContainerHealth? Health { get; init; }

    public static ContainerState Empty(string containerId) => new(containerId, false, "", null, "", DesiredState.None, ContainerStatus.Created,
        0, 0, false, "", 0, 0, default, null, null, []);

    public bool IsRunning => Status is ContainerStatus.Running or ContainerStatus.Paused;
}

public static class ContainerFold
{
    /// <summary>What a run whose host died reports: killed (128 + SIGKILL), as the host's death killed it.</summary>
    public const int NodeLostExitCode = 137;

    public static ContainerState Apply(ContainerState state, IContainerEvent e) => ApplyCore(ContainerHealthFold.Apply(state, e), e);

    private static ContainerState ApplyCore(ContainerState state, IContainerEvent e) => e switch
    {
        ContainerCreated c => state with
        {
            Exists = true,
            Name = c.Name,
            Definition = c.Definition,
            Node = c.Node,
            Desired = DesiredState.Created,
            Status = ContainerStatus.Created,
            CreatedAt = c.At,
        },
        ContainerRenamed r => state with { Name = r.NewName },
        ContainerStarted s => state with
        {
            Desired = DesiredState.Running,
            Status = ContainerStatus.Running,
            Pid = s.Pid,
            Generation = s.Generation,
            Node = s.Node,
            RunEpoch = s.Epoch,
            StartedAt = s.At,
            ExitCode = 0,
            OomKilled = false,
            Error = "",
        },
        ContainerStartFailed f => state with
        {
            Desired = DesiredState.Stopped,
            Generation = f.Generation,
            Error = f.Error,
            ExitCode = f.ExitCode,
            Status = state.Status == ContainerStatus.Restarting ? ContainerStatus.Exited : state.Status,
        },
        ContainerExited x when x.Generation == state.Generation && state.Status != ContainerStatus.Exited => state with
        {
            Status = ContainerStatus.Exited,
            Pid = 0,
            ExitCode = x.ExitCode,
            OomKilled = x.OomKilled,
            FinishedAt = x.At,
        },
        ContainerStopped => state with { Desired = DesiredState.Stopped },
        ContainerKilled k when k.Signal == Signal.Kill => state with { Desired = DesiredState.Stopped },
        ContainerRestarted r => state with { RestartCount = r.RestartCount, Status = state.IsRunning ? state.Status : ContainerStatus.Restarting },
        ContainerPaused => state with { Status = ContainerStatus.Paused },
        ContainerUnpaused => state with { Status = ContainerStatus.Running },
        ContainerExecStarted x => state with { ExecIds = state.ExecIds.Add(x.ExecId) },
        ContainerPlaced p => state with { Node = p.Node },
        // The run on the old host is gone; the next ContainerStarted (or StartFailed) is on the new one.
        ContainerRescheduled r => state with { Node = r.To, Status = ContainerStatus.Restarting, Pid = 0 },
        ContainerNodeLost l when l.Generation == state.Generation => state with
        {
            Status = ContainerStatus.Exited,
            Pid = 0,
            ExitCode = NodeLostExitCode,
            Error = l.Reason,
            FinishedAt = l.At,
        },
        ContainerRemoved => state with { Exists = false, Desired = DesiredState.Removed, Status = ContainerStatus.Removing, Pid = 0 },
        _ => state,
    };

    public static ContainerState Replay(string containerId, IEnumerable<IContainerEvent> events) =>
        events.Aggregate(ContainerState.Empty(containerId), Apply);

    /// <summary>Whether the restart policy wants the container running again after this exit.</summary>
    public static bool ShouldRestart(ContainerState state, int exitCode)
    {
        if (state.Desired != DesiredState.Running || state.Definition is null) return false;
        var policy = state.Definition.RestartPolicy;
        return policy.Name switch
        {
            RestartPolicyName.Always or RestartPolicyName.UnlessStopped => true,
            RestartPolicyName.OnFailure => exitCode != 0 && (policy.MaximumRetryCount <= 0 || state.RestartCount < policy.MaximumRetryCount),
            _ => false,
        };
    }
}

/// <summary>
/// The health part of the fold, kept apart (dockerd's rules, daemon/health.go): a start of a container with a probe
/// resets it to starting with no failures (keeping the log); the end of a run, its host's loss or a pause stops the
/// monitor, which dockerd reports as unhealthy; a recorded change sets the status and adds its probe to the log.
/// Applied to the state before the event (generations are compared with the current run).
/// </summary>
public static class ContainerHealthFold
{
    public static ContainerState Apply(ContainerState state, IContainerEvent e)
    {
        var status = StatusAfter(state.Health?.Status, e, state.Definition?.HasHealthProbe() == true, state.Generation,
            state.Status == ContainerStatus.Exited);
        if (status is not { } now) return state;
        var log = state.Health?.Log ?? [];
        var health = e switch
        {
            ContainerStarted => new ContainerHealth(now, 0, log),
            ContainerHealthChanged h => new ContainerHealth(now, h.FailingStreak, [.. log.TakeLast(HealthcheckResult.MaxLogEntries - 1), h.Probe]),
            _ => state.Health! with { Status = now },
        };
        return state with { Health = health };
    }

    /// <summary>
    /// The status after <paramref name="e"/> (null = no healthcheck); shared by the fold and the list view.
    /// <paramref name="probes"/>: the container has a probe; <paramref name="generation"/>: the current run;
    /// <paramref name="exited"/>: that run's exit is already folded.
    /// </summary>
    public static HealthStatus? StatusAfter(HealthStatus? current, IContainerEvent e, bool probes, long generation, bool exited) => e switch
    {
        ContainerStarted when probes => HealthStatus.Starting,
        ContainerExited x when x.Generation == generation && !exited => MonitorStopped(current),
        ContainerNodeLost l when l.Generation == generation => MonitorStopped(current),
        ContainerRescheduled or ContainerPaused => MonitorStopped(current),
        ContainerHealthChanged h when h.Generation == generation => h.Status,
        _ => current,
    };

    // dockerd's CloseMonitorChannel: "unhealthy when the monitor has stopped for compatibility reasons".
    private static HealthStatus? MonitorStopped(HealthStatus? current) => current is null ? null : HealthStatus.Unhealthy;
}
