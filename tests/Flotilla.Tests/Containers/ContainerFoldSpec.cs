using Flotilla.Cluster.Containers;
using Flotilla.Contracts.Containers;
using Xunit;

namespace Flotilla.Tests.Containers;

public class ContainerFoldSpec
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);

    private static ContainerCreated Created(string id = "c1") =>
        new(id, "web", "busybox:latest", ["sh", "-c", "echo hi"], ["A=1"], new Dictionary<string, string> { ["tier"] = "front" }, T0);

    [Fact]
    public void Empty_stream_is_a_container_that_does_not_exist()
    {
        var state = ContainerFold.Replay("c1", []);
        Assert.False(state.Exists);
        Assert.Equal(DesiredState.None, state.Desired);
    }

    [Fact]
    public void Created_sets_every_field_from_the_event()
    {
        var state = ContainerFold.Replay("c1", [Created()]);
        Assert.True(state.Exists);
        Assert.Equal("web", state.Name);
        Assert.Equal("busybox:latest", state.Image);
        Assert.Equal(["sh", "-c", "echo hi"], state.Cmd.ToArray());
        Assert.Equal(["A=1"], state.Env.ToArray());
        Assert.Equal("front", state.Labels["tier"]);
        Assert.Equal(DesiredState.Created, state.Desired);
        Assert.Equal(T0, state.CreatedAt);
    }

    [Fact]
    public void Renames_apply_in_order()
    {
        var state = ContainerFold.Replay("c1",
        [
            Created(),
            new ContainerRenamed("c1", "web", "api", T0.AddMinutes(1)),
            new ContainerRenamed("c1", "api", "gateway", T0.AddMinutes(2)),
        ]);
        Assert.Equal("gateway", state.Name);
        Assert.Equal("busybox:latest", state.Image);
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
