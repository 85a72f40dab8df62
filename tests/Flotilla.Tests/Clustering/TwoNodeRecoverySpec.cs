using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Sharding;
using Akka.Hosting;
using Flotilla.Cluster.Containers;
using Flotilla.Cluster.EventStore;
using Flotilla.Cluster.Hosting;
using Flotilla.Cluster.Nodes;
using Flotilla.Cluster.Queries;
using Flotilla.Cluster.Serialization;
using Flotilla.Contracts;
using Flotilla.Contracts.Containers;
using Flotilla.Tests.Infrastructure;
using Flotilla.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Xunit;
using Xunit.Abstractions;

namespace Flotilla.Tests.Clustering;

/// <summary>
/// Two real cluster members in this process (own ports, one PostgreSQL). A container entity lives on
/// node B; B leaves; the entity comes back on A with the state it had, replayed from its stream.
/// </summary>
[Collection("postgres")]
public class TwoNodeRecoverySpec(PostgresFixture postgres, ITestOutputHelper output)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(15);

    private static IHost BuildNode(string name, int port, int seedPort, string connectionString)
    {
        var options = new FlotillaClusterOptions
        {
            NodeName = name,
            Roles = [FlotillaClusterOptions.NodeRole],
            BindHost = "127.0.0.1",
            BindPort = port,
            Seeds = [$"127.0.0.1:{seedPort}"],
            PostgresConnectionString = connectionString,
            StableAfter = TimeSpan.FromSeconds(2),
        };
        var self = new NodeDescription(name, "test-host", options.Roles, 2, 1L << 30, "test-kernel", "runc test",
            new Dictionary<string, string> { ["zone"] = name });
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddFlotillaCluster(options, self);
        return builder.Build();
    }

    [Fact]
    public async Task An_entity_whose_node_leaves_recovers_its_state_on_the_other_node()
    {
        var connectionString = await postgres.NewDatabaseAsync("twonode");
        var portA = FreePort.Next();
        var portB = FreePort.Next();
        using var a = BuildNode("node-a", portA, portA, connectionString);
        using var b = BuildNode("node-b", portB, portA, connectionString);
        await a.StartAsync();
        await b.StartAsync();
        try
        {
            var systemA = a.Services.GetRequiredService<ActorSystem>();
            var systemB = b.Services.GetRequiredService<ActorSystem>();
            Assert.True(await Eventually.TrueAsync(() => Task.FromResult(
                Akka.Cluster.Cluster.Get(systemA).State.Members.Count(m => m.Status == MemberStatus.Up) == 2), Wait), "both members up");

            var regionA = a.Services.GetRequiredService<IRequiredActor<ContainerEntity>>().ActorRef;
            // Both regions must have registered with the coordinator, or every shard lands on A.
            Assert.True(await Eventually.TrueAsync(async () =>
                (await regionA.Ask<CurrentRegions>(GetCurrentRegions.Instance, Wait)).Regions.Count == 2, Wait), "both regions registered");

            var wireBefore = MessagePackAkkaSerializer.Calls;
            var origin = new RequestOrigin("tester", "req-two-node");
            var hostedOn = new Dictionary<string, string>();
            for (var i = 0; i < 20; i++)
            {
                var id = $"two-node-{i}";
                var reply = await regionA.Ask<object>(new CreateContainer(id, $"name-{i}",
                    ContainerDefinition.Minimal("busybox", "sha256:" + new string('b', 64), ["sh"]), "node-a", origin), Wait);
                Assert.IsType<ContainerCommandAccepted>(reply);
                hostedOn[id] = (await regionA.Ask<ContainerSnapshot>(new GetContainer(id), Wait)).HostedOn;
            }
            output.WriteLine(string.Join(", ", hostedOn.Select(h => $"{h.Key}@{h.Value}")));
            var onB = hostedOn.Where(h => h.Value == "node-b").Select(h => h.Key).ToList();
            Assert.NotEmpty(onB);
            var id0 = onB[0];
            await regionA.Ask<ContainerCommandAccepted>(new RenameContainer(id0, "renamed-on-b", origin), Wait);

            var wireAfter = MessagePackAkkaSerializer.Calls;
            Assert.True(wireAfter.Serialized > wireBefore.Serialized && wireAfter.Deserialized > wireBefore.Deserialized,
                "commands to entities on node B crossed the wire through the MessagePack serializer");

            // B must be in the node table before it leaves, or there is nothing to mark down: a node that stops
            // before its registration commits never appears (CI failed here once: node-b's stream was empty).
            var nodeTable = a.Services.GetRequiredService<ClusterQueries>();
            Assert.True(await Eventually.TrueAsync(async () =>
                (await nodeTable.NodesAsync()).Any(n => n.Name == "node-b" && n.Status == NodeStatus.Ready), Wait), "node-b registered");

            // Node B leaves the cluster (coordinated shutdown: hand-off, then the member is removed).
            await b.StopAsync();
            Assert.True(await Eventually.TrueAsync(() => Task.FromResult(
                Akka.Cluster.Cluster.Get(systemA).State.Members.Count == 1), Wait), "B removed");

            var recovered = await regionA.Ask<ContainerSnapshot>(new GetContainer(id0), Wait);
            Assert.Equal("node-a", recovered.HostedOn);
            Assert.True(recovered.Exists);
            Assert.Equal("renamed-on-b", recovered.Name);
            Assert.Equal(2, recovered.Version);

            // The departure is an event in B's stream, and the node table shows it.
            var queries = a.Services.GetRequiredService<ClusterQueries>();
            var down = await Eventually.TrueAsync(async () =>
                (await queries.NodesAsync()).SingleOrDefault(n => n.Name == "node-b")?.Status == NodeStatus.Down,
                TimeSpan.FromSeconds(45)); // long enough for the agent's sweep (10 s grace, every 2 s) to catch a missed departure
            if (!down)
            {
                var journal = a.Services.GetRequiredService<IEventJournal>();
                var stream = await journal.ReadAsync(Flotilla.Contracts.Nodes.NodeStreams.Key("node-b"));
                var view = (await queries.NodesAsync()).SingleOrDefault(n => n.Name == "node-b");
                Assert.Fail($"node-b recorded as down: view {view?.Status} at {view?.Address} joined {view?.JoinedAt:O}; " +
                    $"stream: {string.Join(", ", stream.Events.Select(e => e.GetType().Name))}; " +
                    $"members of A: {string.Join(", ", Akka.Cluster.Cluster.Get(systemA).State.Members.Select(m => $"{m.Address}={m.Status}"))}; now {DateTimeOffset.UtcNow:O}");
            }
            var nodes = await queries.NodesAsync();
            Assert.Equal(NodeStatus.Ready, nodes.Single(n => n.Name == "node-a").Status);
            Assert.Equal("node-a", nodes.Single(n => n.Name == "node-a").Labels["zone"]);
        }
        finally
        {
            await b.StopAsync();
            await a.StopAsync();
        }
    }
}
