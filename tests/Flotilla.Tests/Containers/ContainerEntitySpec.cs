using Akka.Actor;
using Akka.Configuration;
using Akka.TestKit.Xunit2;
using Flotilla.Cluster.Containers;
using Flotilla.Cluster.EventStore;
using Flotilla.Cluster.Serialization;
using Flotilla.Contracts;
using Flotilla.Contracts.Containers;
using Flotilla.Tests.Infrastructure;
using Flotilla.Tests.Wire;
using Marten;
using Xunit;

namespace Flotilla.Tests.Containers;

/// <summary>
/// ContainerEntity against the real journal, in a local actor system that serializes every
/// message (<c>serialize-messages = on</c>) — so every command and reply has been through MessagePack.
/// </summary>
[Collection("postgres")]
public class ContainerEntitySpec : TestKit, IAsyncLifetime
{
    private readonly PostgresFixture _postgres;
    private DocumentStore _store = null!;
    private EntityHost _host = null!;

    public ContainerEntitySpec(PostgresFixture postgres)
        : base(ConfigurationFactory.ParseString("akka.actor.serialize-messages = on\nakka.actor.serialize-creators = off")
            .WithFallback(ConfigurationFactory.ParseString(SerializerBinding.Hocon)))
    {
        _postgres = postgres;
    }

    public async Task InitializeAsync()
    {
        _store = FlotillaStore.Create(await _postgres.NewDatabaseAsync("entity"));
        await _store.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
        _host = new EntityHost(new MartenEventJournal(_store), "node-test");
    }

    public Task DisposeAsync()
    {
        _store.Dispose();
        return Task.CompletedTask;
    }

    private static readonly RequestOrigin Origin = new("bob", "req-1");
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    private static CreateContainer Create(string id, string name = "web") =>
        new(id, name, ContainerDefinition.Minimal("busybox:latest", "sha256:" + new string('a', 64), ["sh"], ["A=1"],
            new Dictionary<string, string> { ["k"] = "v" }), "node-test", Origin);

    [Fact]
    public void Create_persists_and_replies_with_the_events()
    {
        Assert.True(Sys.Settings.SerializeAllMessages, "serialize-messages is on");
        Assert.IsType<MessagePackAkkaSerializer>(Sys.Serialization.FindSerializerFor(new GetContainer("c1")));
        var before = MessagePackAkkaSerializer.Calls.Serialized;
        var entity = Sys.ActorOf(ContainerEntity.PropsFor(_host, "c1"));

        // Tell with the test actor as sender: replies to an actor cell are serialized too (asks' temp refs are not).
        entity.Tell(Create("c1"), TestActor);
        var ok = ExpectMsg<ContainerCommandAccepted>(Wait);
        Assert.Equal(1, ok.Version);
        Assert.IsType<ContainerCreated>(Assert.Single(ok.Events));

        entity.Tell(new GetContainer("c1"), TestActor);
        var snapshot = ExpectMsg<ContainerSnapshot>(Wait);
        Assert.True(snapshot.Exists);
        Assert.Equal("web", snapshot.Name);
        Assert.Equal("node-test", snapshot.HostedOn);
        Assert.True(MessagePackAkkaSerializer.Calls.Serialized >= before + 4,
            $"commands and replies went through MessagePack ({before} -> {MessagePackAkkaSerializer.Calls.Serialized})");
    }

    [Fact]
    public async Task A_new_incarnation_recovers_state_from_the_stream()
    {
        var first = Sys.ActorOf(ContainerEntity.PropsFor(_host, "c2"));
        await first.Ask<ContainerCommandAccepted>(Create("c2"), Wait);
        await first.Ask<ContainerCommandAccepted>(new RenameContainer("c2", "renamed", Origin), Wait);
        await first.GracefulStop(Wait);

        var second = Sys.ActorOf(ContainerEntity.PropsFor(_host, "c2"));
        var snapshot = await second.Ask<ContainerSnapshot>(new GetContainer("c2"), Wait);
        Assert.True(snapshot.Exists);
        Assert.Equal("renamed", snapshot.Name);
        Assert.Equal(2, snapshot.Version);
    }

    [Fact]
    public async Task Creating_twice_is_a_conflict_and_appends_nothing()
    {
        var entity = Sys.ActorOf(ContainerEntity.PropsFor(_host, "c3"));
        await entity.Ask<ContainerCommandAccepted>(Create("c3"), Wait);
        var rejected = await entity.Ask<CommandRejected>(Create("c3"), Wait);
        Assert.Equal(RejectionCode.Conflict, rejected.Code);
        Assert.Equal(1, (await _host.Journal.ReadAsync(ContainerStreams.Key("c3"))).Version);
    }

    [Fact]
    public async Task A_move_off_a_gone_host_about_an_older_lease_epoch_than_the_current_run_changes_nothing()
    {
        // The run started under epoch 3 of n2: the host came back with a new lease after epoch 2 expired.
        var definition = Create("c9").Definition with { RestartPolicy = new RestartPolicy(RestartPolicyName.Always, 0) };
        var at = DateTimeOffset.UtcNow;
        await _host.Journal.AppendAsync(ContainerStreams.Key("c9"), 0,
            [new ContainerCreated("c9", "c9", definition, "n2", at), new ContainerStarted("c9", 1, "n2", 42, at, Epoch: 3)],
            new EventMetadata("test", "node-test", "req-9", null));
        var entity = Sys.ActorOf(ContainerEntity.PropsFor(_host, "c9"));

        var reply = await entity.Ask<ContainerCommandAccepted>(
            new RescheduleContainer("c9", "n2", "n1", false, "node n2 left the cluster", RequestOrigin.System(), ExpiredEpoch: 2), Wait);
        Assert.Empty(reply.Events);
        Assert.Equal(2, (await _host.Journal.ReadAsync(ContainerStreams.Key("c9"))).Version);
        var snapshot = await entity.Ask<ContainerSnapshot>(new GetContainer("c9"), Wait);
        Assert.Equal(("n2", ContainerStatus.Running), (snapshot.Node, snapshot.Status));
    }

    private sealed class SilentRegion(IActorRef region) : Akka.Hosting.IRequiredActor<ContainerEntity>
    {
        public IActorRef ActorRef => region;
        public Task<IActorRef> GetAsync(CancellationToken cancellationToken = default) => Task.FromResult(region);
    }

    [Fact]
    public async Task A_read_whose_entity_does_not_answer_is_folded_from_the_stream_within_a_second()
    {
        // As during a failover: the entity's shard lived on the dead host, and a message to it is lost until the
        // shard lives on a survivor. Before, the read waited 5 s per attempt for it.
        var at = DateTimeOffset.UtcNow;
        await _host.Journal.AppendAsync(ContainerStreams.Key("c10"), 0,
            [new ContainerCreated("c10", "web10", Create("c10").Definition, "n2", at), new ContainerStarted("c10", 1, "n2", 42, at, Epoch: 3)],
            new EventMetadata("test", "node-test", "req-10", null));
        var lost = CreateTestProbe(); // never answers
        var service = new ContainerService(_store, new SilentRegion(lost.Ref), null!, CommandTimeouts.Default, _host.Journal);

        var clock = System.Diagnostics.Stopwatch.StartNew();
        var snapshot = await service.GetAsync("c10");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1.5), $"took {clock.Elapsed}");
        Assert.Equal(("web10", "n2", ContainerStatus.Running, 42, 2L), (snapshot.Name, snapshot.Node, snapshot.Status, snapshot.Pid, snapshot.Version));
        Assert.NotNull(snapshot.Definition);
        await Assert.ThrowsAsync<Flotilla.Cluster.OperationRejectedException>(() => service.GetAsync("missing"));
    }

    [Fact]
    public async Task Renaming_a_missing_container_is_not_found()
    {
        var entity = Sys.ActorOf(ContainerEntity.PropsFor(_host, "c4"));
        var rejected = await entity.Ask<CommandRejected>(new RenameContainer("c4", "x", Origin), Wait);
        Assert.Equal(RejectionCode.NotFound, rejected.Code);
    }

    [Fact]
    public async Task Of_two_incarnations_the_stale_one_loses_the_version_check_and_stops()
    {
        var a = Sys.ActorOf(ContainerEntity.PropsFor(_host, "c5"));
        var b = Sys.ActorOf(ContainerEntity.PropsFor(_host, "c5"));
        // Both have recovered the empty stream before either writes.
        await a.Ask<ContainerSnapshot>(new GetContainer("c5"), Wait);
        await b.Ask<ContainerSnapshot>(new GetContainer("c5"), Wait);

        await a.Ask<ContainerCommandAccepted>(Create("c5", "from-a"), Wait);
        Watch(b);
        var rejected = await b.Ask<CommandRejected>(Create("c5", "from-b"), Wait);
        Assert.Equal(RejectionCode.Conflict, rejected.Code);
        ExpectTerminated(b, Wait);

        var stream = await _host.Journal.ReadAsync(ContainerStreams.Key("c5"));
        Assert.Equal("from-a", Assert.IsType<ContainerCreated>(Assert.Single(stream.Events)).Name);
    }

    [Fact]
    public async Task A_create_sent_to_a_fresh_incarnation_of_an_existing_container_is_a_conflict_without_replay()
    {
        var first = Sys.ActorOf(ContainerEntity.PropsFor(_host, "c6"));
        await first.Ask<ContainerCommandAccepted>(Create("c6", "original"), Wait);
        await first.GracefulStop(Wait);

        // A create is the one first command that skips the replay: the append expecting version 0 is the fence.
        var reads = ((MartenEventJournal)_host.Journal).Read.Streams;
        var second = Sys.ActorOf(ContainerEntity.PropsFor(_host, "c6"));
        Watch(second);
        var rejected = await second.Ask<CommandRejected>(Create("c6", "again"), Wait);
        Assert.Equal(RejectionCode.Conflict, rejected.Code);
        Assert.Equal(reads, ((MartenEventJournal)_host.Journal).Read.Streams);
        ExpectTerminated(second, Wait);

        var stream = await _host.Journal.ReadAsync(ContainerStreams.Key("c6"));
        Assert.Equal("original", Assert.IsType<ContainerCreated>(Assert.Single(stream.Events)).Name);
        // Any other first command replays the stream.
        var third = Sys.ActorOf(ContainerEntity.PropsFor(_host, "c6"));
        Assert.Equal("original", (await third.Ask<ContainerSnapshot>(new GetContainer("c6"), Wait)).Name);
    }

    [Fact]
    public async Task A_name_another_container_holds_is_refused_by_the_store_and_the_entity_stays_usable()
    {
        var holder = Sys.ActorOf(ContainerEntity.PropsFor(_host, "c7"));
        await holder.Ask<ContainerCommandAccepted>(Create("c7", "taken"), Wait);

        var other = Sys.ActorOf(ContainerEntity.PropsFor(_host, "c8"));
        Watch(other);
        var rejected = await other.Ask<CommandRejected>(Create("c8", "taken"), Wait);
        Assert.Equal(RejectionCode.Conflict, rejected.Code);
        Assert.Contains(FlotillaStore.ContainerNameIndex, rejected.Message);
        Assert.Equal(0, (await _host.Journal.ReadAsync(ContainerStreams.Key("c8"))).Version);

        // Nothing was written, so the same incarnation can create under another name, and a rename onto a taken name
        // is refused the same way.
        var ok = await other.Ask<ContainerCommandAccepted>(Create("c8", "free"), Wait);
        Assert.Equal(1, ok.Version);
        var renamed = await other.Ask<CommandRejected>(new RenameContainer("c8", "taken", Origin), Wait);
        Assert.Equal(RejectionCode.Conflict, renamed.Code);
        Assert.Equal("free", (await other.Ask<ContainerSnapshot>(new GetContainer("c8"), Wait)).Name);
        ExpectNoMsg(TimeSpan.FromMilliseconds(200));
    }
}
