using Flotilla.Cluster.Containers;
using Flotilla.Contracts.Containers;
using Xunit;

namespace Flotilla.Tests.Containers;

public class ContainerFoldSpec
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);

    private static ContainerDefinition Definition(RestartPolicyName restart = RestartPolicyName.No, int max = 0) =>
        ContainerDefinition.Minimal("busybox:latest", "sha256:" + new string('a', 64), ["sh", "-c", "echo hi"], ["A=1"],
            new Dictionary<string, string> { ["tier"] = "front" }) with
        { RestartPolicy = new RestartPolicy(restart, max) };

    private static ContainerCreated Created(RestartPolicyName restart = RestartPolicyName.No, int max = 0) => new("c1", "web", Definition(restart, max), "n1", T0);

    [Fact]
    public void Empty_stream_is_a_container_that_does_not_exist()
    {
        var state = ContainerFold.Replay("c1", []);
        Assert.False(state.Exists);
        Assert.Equal(DesiredState.None, state.Desired);
    }

    [Fact]
    public void Created_sets_the_definition_and_status()
    {
        var state = ContainerFold.Replay("c1", [Created()]);
        Assert.True(state.Exists);
        Assert.Equal("web", state.Name);
        Assert.Equal("n1", state.Node);
        Assert.Equal(["sh", "-c", "echo hi"], state.Definition!.Args);
        Assert.Equal("front", state.Definition.Labels["tier"]);
        Assert.Equal(DesiredState.Created, state.Desired);
        Assert.Equal(ContainerStatus.Created, state.Status);
    }

    [Fact]
    public void Start_then_exit_keeps_desired_running_but_observes_exited()
    {
        var state = ContainerFold.Replay("c1",
        [
            Created(),
            new ContainerStarted("c1", 1, "n1", 42, T0),
            new ContainerExited("c1", 1, 3, false, T0.AddSeconds(1)),
        ]);
        Assert.Equal(DesiredState.Running, state.Desired);
        Assert.Equal(ContainerStatus.Exited, state.Status);
        Assert.Equal(3, state.ExitCode);
        Assert.Equal(0, state.Pid);
    }

    [Fact]
    public void An_exit_of_an_older_generation_changes_nothing()
    {
        var state = ContainerFold.Replay("c1",
        [
            Created(),
            new ContainerStarted("c1", 1, "n1", 42, T0),
            new ContainerStarted("c1", 2, "n1", 43, T0),
            new ContainerExited("c1", 1, 137, false, T0),
        ]);
        Assert.Equal(ContainerStatus.Running, state.Status);
        Assert.Equal(43, state.Pid);
    }

    [Fact]
    public void A_user_stop_makes_the_desired_state_stopped()
    {
        var state = ContainerFold.Replay("c1",
        [
            Created(RestartPolicyName.Always),
            new ContainerStarted("c1", 1, "n1", 42, T0),
            new ContainerStopped("c1", Signal.Term, 10, T0),
            new ContainerExited("c1", 1, 143, false, T0),
        ]);
        Assert.Equal(DesiredState.Stopped, state.Desired);
        Assert.False(ContainerFold.ShouldRestart(state, 143));
    }

    [Theory]
    [InlineData(RestartPolicyName.No, 0, 1, 0, false)]
    [InlineData(RestartPolicyName.Always, 0, 0, 0, true)]
    [InlineData(RestartPolicyName.UnlessStopped, 0, 0, 5, true)]
    [InlineData(RestartPolicyName.OnFailure, 0, 0, 0, false)]
    [InlineData(RestartPolicyName.OnFailure, 0, 1, 7, true)]
    [InlineData(RestartPolicyName.OnFailure, 2, 1, 1, true)]
    [InlineData(RestartPolicyName.OnFailure, 2, 1, 2, false)]
    public void Restart_policies_decide_after_an_exit(RestartPolicyName policy, int max, int exitCode, int restarts, bool restart)
    {
        var state = ContainerFold.Replay("c1",
        [
            Created(policy, max),
            new ContainerStarted("c1", 1, "n1", 42, T0),
            new ContainerRestarted("c1", "policy", restarts, T0),
            new ContainerExited("c1", 1, exitCode, false, T0),
        ]);
        Assert.Equal(restart, ContainerFold.ShouldRestart(state, exitCode));
    }

    [Fact]
    public void Pause_unpause_rename_exec_and_remove()
    {
        var state = ContainerFold.Replay("c1",
        [
            Created(),
            new ContainerStarted("c1", 1, "n1", 42, T0),
            new ContainerPaused("c1", T0),
            new ContainerRenamed("c1", "web", "api", T0),
        ]);
        Assert.Equal(ContainerStatus.Paused, state.Status);
        Assert.Equal("api", state.Name);
        state = ContainerFold.Apply(state, new ContainerUnpaused("c1", T0));
        state = ContainerFold.Apply(state, new ContainerExecStarted("c1", "e1", ["ls"], "root", false, T0));
        Assert.Equal(ContainerStatus.Running, state.Status);
        Assert.Equal(["e1"], state.ExecIds);
        state = ContainerFold.Apply(state, new ContainerRemoved("c1", T0));
        Assert.False(state.Exists);
        Assert.Equal(DesiredState.Removed, state.Desired);
    }

    [Fact]
    public void Fold_is_pure_the_input_state_is_unchanged()
    {
        var before = ContainerFold.Replay("c1", [Created()]);
        var after = ContainerFold.Apply(before, new ContainerRenamed("c1", "web", "db", T0));
        Assert.Equal("web", before.Name);
        Assert.Equal("db", after.Name);
    }
}

public class ContainerFoldFailoverSpec
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);

    private static readonly ContainerDefinition Definition =
        ContainerDefinition.Minimal("busybox:latest", "sha256:" + new string('a', 64), ["sleep", "1000"]) with
        { RestartPolicy = new RestartPolicy(RestartPolicyName.Always, 0) };

    private static readonly IContainerEvent[] RunningOnN1 =
    [
        new ContainerCreated("c1", "web", Definition, "n1", T0),
        new ContainerPlaced("c1", "n1", "spread", "spread: fewest containers", T0),
        new ContainerStarted("c1", 1, "n1", 42, T0),
    ];

    [Fact]
    public void Rescheduled_moves_the_container_and_ends_the_old_run()
    {
        var state = ContainerFold.Replay("c1", [.. RunningOnN1, new ContainerRescheduled("c1", "n1", "n2", "node n1 left", T0)]);
        Assert.Equal("n2", state.Node);
        Assert.Equal(ContainerStatus.Restarting, state.Status);
        Assert.Equal(0, state.Pid);
        Assert.Equal(DesiredState.Running, state.Desired);

        var started = ContainerFold.Apply(state, new ContainerStarted("c1", 2, "n2", 77, T0));
        Assert.Equal(ContainerStatus.Running, started.Status);
        Assert.Equal("n2", started.Node);
        Assert.Equal(2, started.Generation);
    }

    [Fact]
    public void Node_lost_ends_the_run_of_its_generation_only()
    {
        var lost = ContainerFold.Replay("c1", [.. RunningOnN1, new ContainerNodeLost("c1", "n1", 1, "node n1 left", T0)]);
        Assert.Equal(ContainerStatus.Exited, lost.Status);
        Assert.Equal(ContainerFold.NodeLostExitCode, lost.ExitCode);
        Assert.Equal("node n1 left", lost.Error);

        var stale = ContainerFold.Replay("c1", [.. RunningOnN1, new ContainerNodeLost("c1", "n1", 0, "old", T0)]);
        Assert.Equal(ContainerStatus.Running, stale.Status);
    }
}
