using MessagePack;

namespace Flotilla.Contracts.Containers;

/// <summary>Docker's health states of a container that has a healthcheck (<c>none</c> is no healthcheck: a null health).</summary>
public enum HealthStatus
{
    Starting,
    Healthy,
    Unhealthy,
}

public static class HealthStatuses
{
    /// <summary>Docker's word: <c>starting</c>, <c>healthy</c>, <c>unhealthy</c>; <c>none</c> for no healthcheck.</summary>
    public static string Word(this HealthStatus? status) => status switch
    {
        HealthStatus.Starting => "starting",
        HealthStatus.Healthy => "healthy",
        HealthStatus.Unhealthy => "unhealthy",
        _ => "none",
    };
}

/// <summary>How a healthcheck's <see cref="HealthcheckConfig.Test"/> runs.</summary>
public enum HealthProbeKind
{
    /// <summary><c>["NONE"]</c>, an empty test or an image's unknown kind: nothing is probed.</summary>
    None,
    /// <summary><c>["CMD", arg…]</c>: the arguments are executed directly.</summary>
    Cmd,
    /// <summary><c>["CMD-SHELL", command]</c>: the command runs with the container's shell (default <c>/bin/sh -c</c>).</summary>
    CmdShell,
}

/// <summary>
/// Docker's <c>Config.Healthcheck</c> (the image spec's <c>HealthcheckConfig</c>), as merged at create: durations in
/// nanoseconds, 0 = Docker's default (applied when probing, so inspect shows what was asked, as dockerd does).
/// </summary>
[MessagePackObject(true)]
public sealed record HealthcheckConfig(IReadOnlyList<string> Test, long Interval, long Timeout, long StartPeriod, long StartInterval, int Retries)
{
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromSeconds(30);
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(30);
    public static readonly TimeSpan DefaultStartInterval = TimeSpan.FromSeconds(5);
    public const int DefaultRetries = 3;

    // Methods, not properties: the record is stored (JSON) and sent (MessagePack) with its properties only.
    public HealthProbeKind Kind() => Test.Count == 0 ? HealthProbeKind.None : Test[0] switch
    {
        "CMD" => HealthProbeKind.Cmd,
        "CMD-SHELL" => HealthProbeKind.CmdShell,
        _ => HealthProbeKind.None,
    };

    /// <summary>Whether the container is probed at all (dockerd's <c>getProbe</c> is not nil).</summary>
    public bool Probes() => Kind() != HealthProbeKind.None;

    public TimeSpan EffectiveInterval() => OrDefault(Interval, DefaultInterval);
    public TimeSpan EffectiveTimeout() => OrDefault(Timeout, DefaultTimeout);
    public TimeSpan EffectiveStartPeriod() => OrDefault(StartPeriod, TimeSpan.Zero);
    public TimeSpan EffectiveStartInterval() => OrDefault(StartInterval, DefaultStartInterval);
    public int EffectiveRetries() => Retries <= 0 ? DefaultRetries : Retries;

    /// <summary>What runs in the container: the arguments of CMD, or the shell and the command of CMD-SHELL.</summary>
    public IReadOnlyList<string> ProbeArgs(IReadOnlyList<string> shell) => Kind() switch
    {
        HealthProbeKind.Cmd => Test.Skip(1).ToList(),
        HealthProbeKind.CmdShell => [.. shell.Count > 0 ? shell : ["/bin/sh", "-c"], .. Test.Skip(1)],
        _ => [],
    };

    private static TimeSpan OrDefault(long nanoseconds, TimeSpan fallback) => nanoseconds == 0 ? fallback : TimeSpan.FromTicks(nanoseconds / 100);
}

/// <summary>One run of a probe (Docker's <c>HealthcheckResult</c>): exit code 0 healthy, else failed; -1 could not run or timed out.</summary>
[MessagePackObject(true)]
public sealed record HealthcheckResult(DateTimeOffset Start, DateTimeOffset End, int ExitCode, string Output)
{
    /// <summary>dockerd keeps at most this much of a probe's output (stdout and stderr together), then appends "...".</summary>
    public const int MaxOutputBytes = 4096;

    /// <summary>dockerd's inspect shows the last five results.</summary>
    public const int MaxLogEntries = 5;
}

/// <summary>Docker's <c>State.Health</c>: the status, the current streak of failed probes, the last results (oldest first).</summary>
[MessagePackObject(true)]
public sealed record ContainerHealth(HealthStatus Status, int FailingStreak, IReadOnlyList<HealthcheckResult> Log);

/// <summary>
/// The node ran a probe of run <paramref name="Generation"/> (runtime → entity, after every probe). The entity keeps
/// the result in memory for inspect and records <see cref="ContainerHealthChanged"/> only when the status changes.
/// </summary>
[MessagePackObject(true)]
public sealed record ContainerHealthProbed(string ContainerId, long Generation, HealthStatus Status, int FailingStreak, HealthcheckResult Result)
    : IWithContainerId;
