using System.Collections.Concurrent;
using System.Security.Cryptography;
using Akka.Actor;
using Akka.TestKit.Xunit2;
using Flotilla.Contracts.Containers;
using Flotilla.Contracts.Nodes;
using Flotilla.NodeRuntime;
using Flotilla.NodeRuntime.Containers;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Oci;
using Xunit;

namespace Flotilla.Tests.Containers;

/// <summary>
/// The runtime actor takes work only from the container entity the request names (issue 13, item 2): anything
/// else (an arbitrary actor, an Ask from /temp, another container's entity, an invalid id) is refused, answered
/// with <see cref="RuntimeFailed"/> and recorded.
/// </summary>
public sealed class RuntimeCallerSpec : TestKit
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "flt-rc-" + Guid.NewGuid().ToString("N")[..8]);
    private readonly ConcurrentQueue<RuntimeRequestRefused> _refusals = new();
    private readonly IActorRef _runtime;

    public RuntimeCallerSpec()
    {
        var monitor = new ConmonMonitor(new ConmonOptions { DataRoot = _root }, new RuncDriver("/usr/sbin/runc", Path.Combine(_root, "oci")));
        var runtime = new NodeContainerRuntime(_root, new NodeImageStore(_root), monitor);
        // Remote senders are never node members here: only this system's entities qualify.
        var policy = new RuntimeCallerPolicy("container", _ => false);
        _runtime = Sys.ActorOf(RuntimeActor.PropsFor(runtime, CreateTestProbe().Ref, "n1", policy, r =>
        {
            _refusals.Enqueue(r);
            return Task.CompletedTask;
        }), "runtime");
    }

    private static string NewId() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));

    /// <summary>An actor at <c>/system/sharding/container/7/&lt;id&gt;</c>, as the shard region makes entities, relaying what it gets to <paramref name="probe"/>.</summary>
    private IActorRef EntityFor(string id, IActorRef probe)
    {
        var system = (ExtendedActorSystem)Sys;
        var sharding = system.SystemActorOf(Props.Create(() => new Maker()), "sharding");
        var region = sharding.Ask<IActorRef>(new Make("container", Props.Create(() => new Maker()))).GetAwaiter().GetResult();
        var shard = region.Ask<IActorRef>(new Make("7", Props.Create(() => new Maker()))).GetAwaiter().GetResult();
        return shard.Ask<IActorRef>(new Make(id, Props.Create(() => new Relay(probe)))).GetAwaiter().GetResult();
    }

    [Fact]
    public void A_request_from_an_arbitrary_actor_is_refused_and_recorded()
    {
        var id = NewId();
        _runtime.Tell(new RemoveContainerFiles(id), TestActor);
        var failed = ExpectMsg<RuntimeFailed>();
        Assert.Contains("refused", failed.Error);
        AwaitCondition(() => !_refusals.IsEmpty);
        var refusal = Assert.Single(_refusals);
        Assert.Equal(nameof(RemoveContainerFiles), refusal.Request);
        Assert.Equal(id, refusal.ContainerId);
        Assert.Equal(TestActor.Path.ToString(), refusal.Sender);
        Assert.Equal("n1", refusal.Node);
    }

    [Fact]
    public async Task An_ask_from_temp_is_refused()
    {
        var reply = await _runtime.Ask<object>(new RunContainerProcess(NewId(), "x", 1, ContainerDefinition.Minimal("busybox", "sha256:" + new string('0', 64), ["sh"])),
            TimeSpan.FromSeconds(5));
        Assert.Contains("refused", Assert.IsType<RuntimeFailed>(reply).Error);
    }

    [Fact]
    public void The_container_entity_is_served_but_not_for_another_container_nor_an_invalid_id()
    {
        var id = NewId();
        var probe = CreateTestProbe();
        var entity = EntityFor(id, probe.Ref);

        entity.Tell(new Send(_runtime, new RemoveContainerFiles(id)));
        Assert.Equal(id, probe.ExpectMsg<RuntimeDone>(TimeSpan.FromSeconds(10)).ContainerId);

        entity.Tell(new Send(_runtime, new RemoveContainerFiles(NewId())));
        Assert.Contains("not the container entity", probe.ExpectMsg<RuntimeFailed>().Error);

        entity.Tell(new Send(_runtime, new RemoveContainerFiles("../" + id[3..])));
        Assert.Contains("invalid container id", probe.ExpectMsg<RuntimeFailed>().Error);
        AwaitCondition(() => _refusals.Count == 2);
    }

    private sealed record Make(string Name, Props Props);

    private sealed record Send(IActorRef To, object Message);

    private sealed class Maker : ReceiveActor
    {
        public Maker() => Receive<Make>(m => Sender.Tell(Context.ActorOf(m.Props, m.Name)));
    }

    private sealed class Relay : ReceiveActor
    {
        public Relay(IActorRef probe)
        {
            Receive<Send>(s => s.To.Tell(s.Message, Self));
            ReceiveAny(m => probe.Tell(m));
        }
    }

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing && Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }
}
