using Akka.Actor;
using Akka.Configuration;
using Akka.TestKit.Xunit2;
using Flotilla.Cluster.EventStore;
using Flotilla.Cluster.Nodes;
using Flotilla.Cluster.Queries;
using Flotilla.Cluster.Scheduling;
using Flotilla.Contracts;
using Flotilla.Contracts.Containers;
using Flotilla.Contracts.Nodes;
using Flotilla.Tests.Infrastructure;
using Marten;
using Xunit;

namespace Flotilla.Tests.Scheduling;

/// <summary>
/// The scheduler singleton in a one-member cluster of its own, against the real projections; a probe stands in for
/// the container shard region, so a move can go unanswered the way one routed to a dead member's region does.
/// </summary>
[Collection("postgres")]
public class SchedulerSpec(PostgresFixture postgres) : TestKit(ConfigurationFactory.ParseString("""
    akka.actor.provider = cluster
    akka.remote.dot-netty.tcp.hostname = 127.0.0.1
    akka.remote.dot-netty.tcp.port = 0
    akka.loglevel = WARNING
    """)), IAsyncLifetime
{
    private DocumentStore _store = null!;
    private MartenEventJournal _journal = null!;
    private static readonly EventMetadata Meta = new("test", "node-test", "req-1", null);

    public async Task InitializeAsync()
    {
        _store = FlotillaStore.Create(await postgres.NewDatabaseAsync("scheduler_move"));
        await _store.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
        _journal = new MartenEventJournal(_store);
        var cluster = Akka.Cluster.Cluster.Get(Sys);
        var up = new TaskCompletionSource();
        cluster.RegisterOnMemberUp(() => up.TrySetResult());
        cluster.Join(cluster.SelfAddress);
        await up.Task.WaitAsync(TimeSpan.FromSeconds(20));
    }

    public Task DisposeAsync()
    {
        _store.Dispose();
        return Task.CompletedTask;
    }

    private Task RegisterAsync(string name, string address) =>
        _journal.AppendAsync(NodeStreams.Key(name), 0,
            [new NodeJoined(name, name, address, [Flotilla.Cluster.Hosting.FlotillaClusterOptions.NodeRole], 4, 8L << 30, "k", "runc",
                new Dictionary<string, string>(), DateTimeOffset.UtcNow)], Meta);

    [Fact]
    public async Task A_move_off_a_gone_host_that_goes_unanswered_is_sent_again_within_seconds()
    {
        // "alive" is this member; "gone" has an address no member has, like a host the cluster removed.
        await RegisterAsync("alive", Akka.Cluster.Cluster.Get(Sys).SelfAddress.ToString());
        await RegisterAsync("gone", "akka.tcp://flotilla@127.0.0.1:1");
        var definition = ContainerDefinition.Minimal("busybox", "sha256:" + new string('a', 64), ["sleep", "300"]) with
        {
            RestartPolicy = new RestartPolicy(RestartPolicyName.Always, 0),
        };
        var at = DateTimeOffset.UtcNow;
        await _journal.AppendAsync(ContainerStreams.Key("orphan"), 0,
            [new ContainerCreated("orphan", "orphan", definition, "gone", at), new ContainerPlaced("orphan", "gone", "spread", "test", at),
             new ContainerStarted("orphan", 1, "gone", 42, at)], Meta);

        var region = CreateTestProbe();
        Sys.ActorOf(Scheduler.PropsFor(new ClusterQueries(_store), new HostLeaseStore(_store), _journal, LeaseTiming.Default, region.Ref, "spread", failover: true));

        // The first move is lost (never answered): the scheduler gives up on it after its short ask and sends it again
        // at once, not after the 20 s a drain's move may take.
        var first = region.ExpectMsg<RescheduleContainer>(TimeSpan.FromSeconds(15));
        Assert.Equal(("orphan", "gone", "alive", false), (first.ContainerId, first.From, first.To, first.FromAlive));
        var lostAt = DateTime.UtcNow;
        var again = region.ExpectMsg<RescheduleContainer>(TimeSpan.FromSeconds(8));
        var gap = DateTime.UtcNow - lostAt;
        Assert.Equal(("orphan", "alive"), (again.ContainerId, again.To));
        Assert.InRange(gap, TimeSpan.FromSeconds(2.5), TimeSpan.FromSeconds(5));

        // Done this time (the store says so, as the entity would have made it): it is not sent a third time.
        await _journal.AppendAsync(ContainerStreams.Key("orphan"), 3,
            [new ContainerRescheduled("orphan", "gone", "alive", again.Reason, DateTimeOffset.UtcNow)], Meta);
        region.Reply(new ContainerCommandAccepted("orphan", [], 4));
        region.ExpectNoMsg(TimeSpan.FromSeconds(3));
    }

    [Fact]
    public async Task A_container_with_a_local_volume_is_not_moved_off_a_gone_host_unless_labelled_and_its_end_says_why()
    {
        await RegisterAsync("alive", Akka.Cluster.Cluster.Get(Sys).SelfAddress.ToString());
        await RegisterAsync("gone", "akka.tcp://flotilla@127.0.0.1:1");
        var definition = ContainerDefinition.Minimal("busybox", "sha256:" + new string('a', 64), ["sleep", "300"]) with
        {
            RestartPolicy = new RestartPolicy(RestartPolicyName.Always, 0),
            Mounts = [new ContainerMount("volume", "", "/data", false, "data")],
        };
        var at = DateTimeOffset.UtcNow;
        foreach (var (id, d) in new[]
                 {
                     ("pinned", definition),
                     ("movable", definition with { Labels = new Dictionary<string, string> { [Flotilla.Cluster.Volumes.VolumeRegistry.MoveWithoutVolumesLabel] = "true" } }),
                 })
            await _journal.AppendAsync(ContainerStreams.Key(id), 0,
                [new ContainerCreated(id, id, d, "gone", at), new ContainerPlaced(id, "gone", "spread", "test", at),
                 new ContainerStarted(id, 1, "gone", 42, at)], Meta);

        var region = CreateTestProbe();
        Sys.ActorOf(Scheduler.PropsFor(new ClusterQueries(_store), new HostLeaseStore(_store), _journal, LeaseTiming.Default, region.Ref, "spread", failover: true));

        var orders = new List<object> { region.ExpectMsg<object>(TimeSpan.FromSeconds(15)) };
        region.Reply(new ContainerCommandAccepted("x", [], 4));
        orders.Add(region.ExpectMsg<object>(TimeSpan.FromSeconds(15)));
        region.Reply(new ContainerCommandAccepted("x", [], 4));
        var lost = Assert.Single(orders.OfType<MarkContainerNodeLost>());
        Assert.Equal(("pinned", "gone"), (lost.ContainerId, lost.Node));
        Assert.Contains("it uses the local volume(s) data, which live on node gone: it is not moved", lost.Reason);
        Assert.Contains("flotilla.volume.move=true", lost.Reason);
        var move = Assert.Single(orders.OfType<RescheduleContainer>());
        Assert.Equal(("movable", "alive"), (move.ContainerId, move.To));
    }

    [Fact]
    public async Task Containers_of_a_gone_host_move_only_after_its_lease_has_expired_and_the_move_names_the_expired_epoch()
    {
        await RegisterAsync("alive", Akka.Cluster.Cluster.Get(Sys).SelfAddress.ToString());
        await RegisterAsync("gone", "akka.tcp://flotilla@127.0.0.1:1"); // no member: as after a removal
        var leases = new HostLeaseStore(_store);
        await leases.EnsureTableAsync();
        var ttl = TimeSpan.FromSeconds(4);
        var grant = await leases.AcquireAsync("gone", ttl); // its engine renewed just now: it may still run containers
        var definition = ContainerDefinition.Minimal("busybox", "sha256:" + new string('a', 64), ["sleep", "300"]) with
        {
            RestartPolicy = new RestartPolicy(RestartPolicyName.Always, 0),
        };
        var at = DateTimeOffset.UtcNow;
        await _journal.AppendAsync(ContainerStreams.Key("fenced"), 0,
            [new ContainerCreated("fenced", "fenced", definition, "gone", at), new ContainerPlaced("fenced", "gone", "spread", "test", at),
             new ContainerStarted("fenced", 1, "gone", 42, at, grant.Epoch)], Meta);

        var region = CreateTestProbe();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Sys.ActorOf(Scheduler.PropsFor(new ClusterQueries(_store), leases, _journal, LeaseTiming.Default, region.Ref, "spread", failover: true));

        // Not a member any more, but its lease holds: the host's watchdog may not have killed its containers yet.
        region.ExpectNoMsg(ttl - TimeSpan.FromSeconds(0.7));
        var move = region.ExpectMsg<RescheduleContainer>(TimeSpan.FromSeconds(4));
        Assert.True(clock.Elapsed >= ttl + LeaseTiming.Default.MoveMargin - TimeSpan.FromSeconds(0.3), $"moved after {clock.Elapsed}");
        Assert.Equal(("fenced", "gone", "alive", false, grant.Epoch), (move.ContainerId, move.From, move.To, move.FromAlive, move.ExpiredEpoch));
        region.Reply(new ContainerCommandAccepted("fenced", [], 4));

        // The expiry is on the node's stream, once.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while ((await _journal.ReadAsync(NodeStreams.Key("gone"))).Events.OfType<HostLeaseExpired>().Count() != 1 && DateTime.UtcNow < deadline)
            await Task.Delay(100);
        Assert.Equal(grant.Epoch, Assert.Single((await _journal.ReadAsync(NodeStreams.Key("gone"))).Events.OfType<HostLeaseExpired>()).Epoch);
    }

    [Fact]
    public async Task A_host_lease_continues_while_valid_and_takes_a_new_epoch_once_expired_after_which_the_old_one_cannot_be_renewed()
    {
        var leases = new HostLeaseStore(_store);
        await leases.EnsureTableAsync();
        var ttl = TimeSpan.FromSeconds(1);
        var first = await leases.AcquireAsync("h", ttl);
        Assert.Equal((1L, false, (long?)null), (first.Epoch, first.Continued, first.PreviousEpoch));
        var again = await leases.AcquireAsync("h", ttl); // an engine restart within the lease
        Assert.Equal((1L, true), (again.Epoch, again.Continued));
        Assert.NotNull(await leases.RenewAsync("h", 1, ttl));

        await Task.Delay(ttl + TimeSpan.FromMilliseconds(300));
        Assert.Null(await leases.RenewAsync("h", 1, ttl)); // expired: lost for good
        Assert.True((await leases.AllAsync())["h"].ExpiredBy(TimeSpan.Zero));
        var next = await leases.AcquireAsync("h", ttl);
        Assert.Equal((2L, false, (long?)1), (next.Epoch, next.Continued, next.PreviousEpoch));
        Assert.Null(await leases.RenewAsync("h", 1, ttl)); // the old epoch stays dead
        Assert.NotNull(await leases.RenewAsync("h", 2, ttl));

        await leases.ReleaseAsync("h", 2);
        Assert.True((await leases.AllAsync())["h"].ExpiredBy(TimeSpan.Zero));
        Assert.Null(await leases.RenewAsync("h", 2, ttl));
    }

    [Fact]
    public async Task A_placement_whose_container_was_stored_and_removed_before_any_read_saw_it_stops_counting()
    {
        var self = Akka.Cluster.Cluster.Get(Sys).SelfAddress.ToString();
        await RegisterAsync("n1", self);
        await RegisterAsync("n2", self);
        var scheduler = Sys.ActorOf(Scheduler.PropsFor(new ClusterQueries(_store), new HostLeaseStore(_store), _journal, LeaseTiming.Default, CreateTestProbe().Ref, "spread", failover: false));
        Task<PlacementDecision> PlaceAsync(string id) =>
            scheduler.Ask<PlacementDecision>(new PlaceContainer(id, 0, 0, [], null), TimeSpan.FromSeconds(15));

        // Placed, stored (never seen by a read: the store here never gets it, as when it is removed at once).
        var first = await PlaceAsync("short-lived");
        scheduler.Tell(new PlacementRecorded("short-lived"));
        await Task.Delay(400); // the picture is stale: the next placement reads first

        // Both nodes are empty again, so the next one goes where the first went; counted 30 s, it would go elsewhere.
        var second = await PlaceAsync("next");
        Assert.Equal(first.Node, second.Node);

        // A placement not yet recorded keeps counting: its create may still be on the way.
        await Task.Delay(400);
        var third = await PlaceAsync("third");
        Assert.NotEqual(second.Node, third.Node);
    }
}
