using Flotilla.Cluster.Containers;
using Flotilla.Contracts.Containers;
using Xunit;

namespace Flotilla.Tests.Containers;

/// <summary>State.Health as the container's events imply it (dockerd's daemon/health.go rules), in the entity's fold and the ps view.</summary>
public class HealthFoldSpec
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);

    private static readonly HealthcheckConfig Check = new(["CMD-SHELL", "test -f /tmp/ok"], 1_000_000_000, 0, 0, 0, 2);

    private static ContainerCreated Created(HealthcheckConfig? check) =>
        new("c1", "web", ContainerDefinition.Minimal("busybox", "sha256:" + new string('a', 64), ["sleep", "300"]) with { Healthcheck = check },
            "n1", T0);

    private static HealthcheckResult Probe(int exitCode) => new(T0, T0.AddMilliseconds(20), exitCode, exitCode == 0 ? "" : "no\n");

    private static ContainerHealthChanged Changed(long generation, HealthStatus status, int streak, int exitCode) =>
        new("c1", generation, status, streak, Probe(exitCode), T0);

    private static ContainerState Replay(params IContainerEvent[] events) => ContainerFold.Replay("c1", events);

    /// <summary>The ps view: made from the entity's fold (<see cref="ContainerViewProjection"/> folds each event with it).</summary>
    private static ContainerView View(params IContainerEvent[] events) => ContainerView.From(Replay(events));

    [Fact]
    public void Without_a_healthcheck_or_with_NONE_there_is_no_health()
    {
        Assert.Null(Replay(Created(null), new ContainerStarted("c1", 1, "n1", 42, T0)).Health);
        var none = Created(new HealthcheckConfig(["NONE"], 0, 0, 0, 0, 0));
        Assert.Null(Replay(none, new ContainerStarted("c1", 1, "n1", 42, T0)).Health);
        Assert.Null(View(none, new ContainerStarted("c1", 1, "n1", 42, T0)).Health);
    }

    [Fact]
    public void A_start_is_starting_then_recorded_changes_set_status_streak_and_log()
    {
        var started = Replay(Created(Check), new ContainerStarted("c1", 1, "n1", 42, T0));
        Assert.Equal(new ContainerHealth(HealthStatus.Starting, 0, []), started.Health);

        var unhealthy = ContainerFold.Apply(started, Changed(1, HealthStatus.Unhealthy, 2, 1));
        Assert.Equal(HealthStatus.Unhealthy, unhealthy.Health!.Status);
        Assert.Equal(2, unhealthy.Health.FailingStreak);
        Assert.Equal(1, Assert.Single(unhealthy.Health.Log).ExitCode);

        var healthy = ContainerFold.Apply(unhealthy, Changed(1, HealthStatus.Healthy, 0, 0));
        Assert.Equal(HealthStatus.Healthy, healthy.Health!.Status);
        Assert.Equal([1, 0], healthy.Health.Log.Select(r => r.ExitCode));
    }

    [Fact]
    public void The_log_keeps_the_last_five()
    {
        var state = Replay(Created(Check), new ContainerStarted("c1", 1, "n1", 42, T0));
        for (var i = 0; i < 7; i++) state = ContainerFold.Apply(state, Changed(1, i % 2 == 0 ? HealthStatus.Unhealthy : HealthStatus.Healthy, 0, i));
        Assert.Equal([2, 3, 4, 5, 6], state.Health!.Log.Select(r => r.ExitCode));
    }

    [Fact]
    public void A_change_of_an_older_run_changes_nothing()
    {
        var state = Replay(Created(Check), new ContainerStarted("c1", 1, "n1", 42, T0), new ContainerExited("c1", 1, 0, false, T0),
            new ContainerStarted("c1", 2, "n1", 43, T0), Changed(1, HealthStatus.Healthy, 0, 0));
        Assert.Equal(HealthStatus.Starting, state.Health!.Status);
    }

    [Fact]
    public void Exit_and_pause_stop_the_monitor_which_dockerd_reports_as_unhealthy_and_a_restart_is_starting_again()
    {
        IContainerEvent[] healthy = [Created(Check), new ContainerStarted("c1", 1, "n1", 42, T0), Changed(1, HealthStatus.Healthy, 0, 0)];
        Assert.Equal(HealthStatus.Unhealthy, Replay([.. healthy, new ContainerExited("c1", 1, 0, false, T0)]).Health!.Status);
        Assert.Equal(HealthStatus.Unhealthy, Replay([.. healthy, new ContainerPaused("c1", T0)]).Health!.Status);
        Assert.Equal(HealthStatus.Unhealthy, Replay([.. healthy, new ContainerPaused("c1", T0), new ContainerUnpaused("c1", T0)]).Health!.Status);
        var restarted = Replay([.. healthy, new ContainerExited("c1", 1, 0, false, T0), new ContainerStarted("c1", 2, "n1", 43, T0)]).Health!;
        Assert.Equal(HealthStatus.Starting, restarted.Status);
        Assert.Single(restarted.Log); // dockerd keeps the log across runs

        Assert.Equal(HealthStatus.Unhealthy, View([.. healthy, new ContainerExited("c1", 1, 0, false, T0)]).Health);
        Assert.Equal(HealthStatus.Starting, View([.. healthy, new ContainerExited("c1", 1, 0, false, T0), new ContainerStarted("c1", 2, "n1", 43, T0)]).Health);
    }

    [Fact]
    public void A_failover_resets_to_starting_on_the_new_host()
    {
        IContainerEvent[] events =
        [
            Created(Check), new ContainerStarted("c1", 1, "n1", 42, T0), Changed(1, HealthStatus.Healthy, 0, 0),
            new ContainerRescheduled("c1", "n1", "n2", "node n1 left", T0, 3),
        ];
        Assert.Equal(HealthStatus.Unhealthy, Replay(events).Health!.Status);
        Assert.Equal(HealthStatus.Unhealthy, View(events).Health);
        IContainerEvent[] moved = [.. events, new ContainerStarted("c1", 2, "n2", 7, T0)];
        Assert.Equal(HealthStatus.Starting, Replay(moved).Health!.Status);
        Assert.Equal(HealthStatus.Starting, View(moved).Health);
    }

    [Fact]
    public void The_view_follows_the_recorded_changes()
    {
        Assert.Equal(HealthStatus.Starting, View(Created(Check), new ContainerStarted("c1", 1, "n1", 42, T0)).Health);
        Assert.Equal(HealthStatus.Healthy,
            View(Created(Check), new ContainerStarted("c1", 1, "n1", 42, T0), Changed(1, HealthStatus.Healthy, 0, 0)).Health);
    }
}
