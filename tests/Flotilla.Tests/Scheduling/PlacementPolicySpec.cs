using Flotilla.Cluster.Scheduling;
using Flotilla.Contracts.Containers;
using Xunit;

namespace Flotilla.Tests.Scheduling;

public class PlacementPolicySpec
{
    private const long GiB = 1L << 30;

    private static NodeCapacity Node(string name, int containers = 0, long reserved = 0, long memory = 8 * GiB, int cpus = 4,
        params (string Key, string Value)[] labels) =>
        new(name, cpus, memory, labels.ToDictionary(l => l.Key, l => l.Value))
        {
            Containers = containers,
            ReservedMemory = reserved,
        };

    private static string? Choose(IReadOnlyCollection<NodeCapacity> nodes, string strategy = "spread", long memory = 0, long cpus = 0,
        params string[] constraints) =>
        PlacementPolicy.Choose(nodes, memory, cpus, constraints.Select(PlacementConstraint.Parse).ToList(), strategy).Node?.Name;

    [Fact]
    public void Spread_takes_the_node_with_the_fewest_containers()
    {
        Assert.Equal("n2", Choose([Node("n1", 3), Node("n2", 1), Node("n3", 2)]));
    }

    [Fact]
    public void Spread_breaks_ties_by_free_memory_then_name()
    {
        Assert.Equal("n2", Choose([Node("n1", 1, reserved: GiB), Node("n2", 1), Node("n3", 1, reserved: GiB)]));
        Assert.Equal("n1", Choose([Node("n3"), Node("n1"), Node("n2")]));
    }

    [Fact]
    public void Nine_placements_in_a_row_spread_three_by_three()
    {
        var nodes = new[] { Node("n1"), Node("n2"), Node("n3") };
        for (var i = 0; i < 9; i++)
        {
            var chosen = PlacementPolicy.Choose(nodes, 0, 0, [], PlacementStrategies.Spread).Node!;
            chosen.Containers++;
        }
        Assert.All(nodes, n => Assert.Equal(3, n.Containers));
    }

    [Fact]
    public void Binpack_fills_the_fullest_node_that_still_fits()
    {
        Assert.Equal("n1", Choose([Node("n1", 2, reserved: 6 * GiB), Node("n2", 0)], "binpack", memory: GiB));
        // n1 cannot take 4 GiB more: the next fullest that fits.
        Assert.Equal("n2", Choose([Node("n1", 2, reserved: 6 * GiB), Node("n2", 1, reserved: GiB), Node("n3")], "binpack", memory: 4 * GiB));
    }

    [Fact]
    public void Memory_and_cpu_reservations_must_fit()
    {
        Assert.Null(Choose([Node("n1", memory: GiB), Node("n2", memory: GiB)], memory: 2 * GiB));
        Assert.Equal("n2", Choose([Node("n1", cpus: 1), Node("n2", cpus: 4)], cpus: 2_000_000_000));
        var refused = PlacementPolicy.Choose([Node("n1", memory: GiB)], 2 * GiB, 0, [], "spread");
        Assert.Contains("2048 MiB memory", refused.Reason);
    }

    [Theory]
    [InlineData("node==n2", "n2")]
    [InlineData("node!=n1", "n2")]
    [InlineData("disk==ssd", "n3")]
    [InlineData("disk!=ssd", "n1")]
    [InlineData("zone==eu-*", "n2")]
    [InlineData("zone==/us-.*/", "n3")]
    [InlineData("node.labels.disk==ssd", "n3")]
    [InlineData("node.hostname==n1", "n1")]
    [InlineData("disk==nvme", null)]
    public void Constraints_filter_nodes(string constraint, string? expected)
    {
        var nodes = new[]
        {
            Node("n1", 0, labels: [("zone", "ap-1")]),
            Node("n2", 1, labels: [("zone", "eu-west")]),
            Node("n3", 2, labels: [("disk", "ssd"), ("zone", "us-east")]),
        };
        Assert.Equal(expected, Choose(nodes, constraints: constraint));
    }

    [Theory]
    [InlineData("disk")]
    [InlineData("==ssd")]
    [InlineData("disk=ssd")]
    [InlineData("disk<>ssd")]
    [InlineData("")]
    public void Malformed_constraints_are_refused(string text)
    {
        Assert.Throws<FormatException>(() => PlacementConstraint.Parse(text));
    }

    [Fact]
    public void No_nodes_is_a_clear_refusal()
    {
        var outcome = PlacementPolicy.Choose([], 0, 0, [], "spread");
        Assert.Null(outcome.Node);
        Assert.Contains("no node is available", outcome.Reason);
    }

    [Fact]
    public void A_request_takes_constraints_from_env_and_labels_and_strips_them_from_the_env()
    {
        var definition = ContainerDefinition.Minimal("busybox", "sha256:" + new string('a', 64), ["true"],
            ["A=1", "constraint:node==n1", "constraint:disk==ssd"],
            new Dictionary<string, string> { ["flotilla.constraint"] = "zone==eu-*; rack!=r2", ["flotilla.strategy"] = "binpack" })
            with
        { Memory = 64L << 20, NanoCpus = 500_000_000 };
        var (request, cleaned) = PlacementRequest.From(definition);
        Assert.Equal(["node==n1", "disk==ssd", "zone==eu-*", "rack!=r2"], request.Constraints);
        Assert.Equal("binpack", request.Strategy);
        Assert.Equal(64L << 20, request.MemoryBytes);
        Assert.Equal(500_000_000, request.NanoCpus);
        Assert.Equal(["A=1"], cleaned.Env);
    }
}
