using Akka.Actor;
using Akka.Configuration;
using Flotilla.Cluster.Serialization;
using Flotilla.Contracts;
using Flotilla.Contracts.Containers;
using Flotilla.Contracts.Images;
using Flotilla.Contracts.Nodes;
using Flotilla.Contracts.Registry;
using Flotilla.Contracts.Wire;
using Xunit;

namespace Flotilla.Tests.Wire;

public class WireManifestSpec : IDisposable
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 2, 3, 4, 5, TimeSpan.FromHours(1));
    private static readonly RequestOrigin Origin = new("alice", "req-1", "cause-1");
    private static readonly Dictionary<string, string> Labels = new() { ["a"] = "b" };

    private static readonly ImageContent Content = new("sha256:abc", "sha256:def", [new LayerRef("sha256:123", 10)], 10, T0,
        "amd64", "linux", "{}", "me", "imported", null);

    private static readonly ContainerDefinition Definition = ContainerDefinition.Minimal("busybox", "sha256:abc", ["sh"], ["A=1"], Labels,
        ["sha256:123"]) with
    {
        RestartPolicy = new RestartPolicy(RestartPolicyName.OnFailure, 3),
        Mounts = [new ContainerMount("bind", "/a", "/b", true, null) { Propagation = "rslave" }],
        Tmpfs = [new ContainerTmpfs("/run", ["size=64m"])],
        Init = true,
        ShmSize = 1 << 23,
        Ulimits = [new ContainerUlimit("nofile", 100, 200)],
        Dns = ["192.0.2.53"],
        DnsSearch = ["example.test"],
        DnsOptions = ["ndots:2"],
        ExtraHosts = ["db.test:192.0.2.7"],
        Healthcheck = new HealthcheckConfig(["CMD-SHELL", "test -f /ok"], 1_000_000_000, 0, 0, 0, 2),
        Shell = ["/bin/ash", "-c"],
    };

    private readonly ActorSystem _system = ActorSystem.Create("wire", ConfigurationFactory.ParseString("akka.loglevel = WARNING"));

    public void Dispose() => _system.Terminate().Wait(TimeSpan.FromSeconds(10));

    /// <summary>One instance of every message type, so a new type without a sample fails the coverage test.</summary>
    public static IEnumerable<object[]> Samples() =>
    [
        [new CommandRejected(RejectionCode.Conflict, "taken")],
        [new NodeJoined("n1", "host", "akka.tcp://flotilla@127.0.0.1:4053", ["node"], 2, 1 << 30, "6.1", "runc 1.1.5", Labels, T0)],
        [new NodeLeft("n1", "stopped", T0)],
        [new CreateContainer("c1", "web", Definition, "n1", Origin)],
        [new StartContainer("c1", Origin)],
        [new StopContainer("c1", 5, Signal.Term, Origin)],
        [new KillContainer("c1", Signal.Kill, Origin)],
        [new RestartContainer("c1", null, Origin)],
        [new PauseContainer("c1", Origin)],
        [new UnpauseContainer("c1", Origin)],
        [new RemoveContainer("c1", true, Origin)],
        [new RecordContainerExec("c1", "e1", ["ls"], "root", false, Origin)],
        [new RecordContainerCommit("c1", "sha256:abc", "x:1", Origin)],
        [new RecordContainerExport("c1", Origin)],
        [new WaitForContainer("c1", WaitCondition.NextExit)],
        [new ContainerWaitResult("c1", 3, null)],
        [new ContainerStarted("c1", 1, "n1", 42, T0)],
        [new ContainerStartFailed("c1", 1, "exec: not found", 127, T0)],
        [new ContainerExited("c1", 1, 0, false, T0)],
        [new ContainerStopped("c1", Signal.Term, 10, T0)],
        [new ContainerKilled("c1", Signal.Kill, T0)],
        [new ContainerRestarted("c1", "user", 0, T0)],
        [new ContainerPaused("c1", T0)],
        [new ContainerUnpaused("c1", T0)],
        [new ContainerExecStarted("c1", "e1", ["ls"], "root", false, T0)],
        [new ContainerCommitted("c1", "sha256:abc", null, T0)],
        [new ContainerExported("c1", T0)],
        [new ContainerRemoved("c1", T0)],
        [new RunContainerProcess("c1", "web", 1, Definition)],
        [new ContainerProcessStarted("c1", 1, 42, T0)],
        [new ContainerProcessFailed("c1", 1, "boom", 128)],
        [new SignalContainerProcess("c1", 1, Signal.Hup)],
        [new StopContainerProcess("c1", 1, Signal.Term, 10)],
        [new PauseContainerProcess("c1", 1, true)],
        [new RemoveContainerFiles("c1")],
        [new ContainerProcessExited("c1", 1, 137, true, T0)],
        [new RuntimeDone("c1")],
        [new RuntimeFailed("c1", "no")],
        [new RenameContainer("c1", "api", Origin)],
        [new GetContainer("c1")],
        [new ContainerSnapshot("c1", true, "web", Definition, "n1", ContainerStatus.Running, "running", 42, 0, false, "", 1, 0, T0, T0, null, ["e1"], 3, "n1")
        {
            Health = new ContainerHealth(HealthStatus.Healthy, 0, [new HealthcheckResult(T0, T0, 0, "ok")]),
        }],
        [new ContainerCommandAccepted("c1", [new ContainerCreated("c1", "web", Definition, "n1", T0), new ContainerRenamed("c1", "web", "api", T0)], 2)],
        [new ContainerCreated("c1", "web", Definition, "n1", T0)],
        [new ContainerRenamed("c1", "web", "api", T0)],
        [new GetImage("sha256:abc")],
        [new ImageSnapshot("sha256:abc", false, ["busybox:latest"], ["n1"], 0, "n1")],
        [new RegisterImage("sha256:abc", ImageSource.Imported, Content, "n1", "from stdin", ["docker.io/library/x:1"], Origin)],
        [new TagImage("sha256:abc", "docker.io/library/x:1", Origin)],
        [new UntagImage("sha256:abc", "docker.io/library/x:1", "rmi", Origin)],
        [new RemoveImage("sha256:abc", Origin)],
        [new ImageCommandAccepted("sha256:abc", [new ImageTagged("sha256:abc", "x:1", T0), new ImageRemoved("sha256:abc", T0)], 4)],
        [new ImageRegistered("sha256:abc", ImageSource.Loaded, Content, "n1", null, T0)],
        [new ImageTagged("sha256:abc", "docker.io/library/x:1", T0)],
        [new ImageUntagged("sha256:abc", "docker.io/library/x:1", "moved", T0)],
        [new ImageRemoved("sha256:abc", T0)],
        [new RecordImageDistribution("sha256:abc", true, "127.0.0.1:5000/x:1", "sha256:def", "127.0.0.1:5000", Origin)],
        [new ImagePulled("sha256:abc", "127.0.0.1:5000/x:1", "sha256:def", "127.0.0.1:5000", T0)],
        [new ImagePushed("sha256:abc", "127.0.0.1:5000/x:1", "sha256:def", "127.0.0.1:5000", T0)],
        [new ContainerPlaced("c1", "n1", "spread", "spread: fewest containers (0) of 3 fitting node(s)", T0)],
        [new ContainerRescheduled("c1", "n1", "n2", "node n1 left the cluster", T0)],
        [new ContainerNodeLost("c1", "n1", 3, "node n1 left the cluster; restart policy 'no'", T0)],
        [new RescheduleContainer("c1", "n1", "n2", false, "node n1 left the cluster", Origin)],
        [new MarkContainerNodeLost("c1", "n1", "node n1 left the cluster", Origin)],
        [new PlaceContainer("c1", 64L << 20, 500_000_000, ["node==n1", "disk==ssd"], "binpack")],
        [new PlacementDecision("n1", "spread", "spread: fewest containers")],
        [new PlacementRefused("no node satisfies the constraints disk==ssd")],
        [new ReleasePlacement("c1")],
        [new PlacementRecorded("c1")],
        [new NodeDrained("n1", "local", T0)],
        [new NodeActivated("n1", "local", T0)],
        [new HostLeaseAcquired("n1", 2, false, 1, T0, T0)],
        [new HostLeaseExpired("n1", 2, T0, T0)],
        [new ContainersFenced("n1", 2, ["c1"], "watchdog", "the lease was not confirmed in time", T0)],
        [new Flotilla.Contracts.Volumes.VolumeCreated("data", "n1", Labels, new Dictionary<string, string> { ["node"] = "n1" }, "--opt node=n1", T0)],
        [new Flotilla.Contracts.Volumes.VolumeRemoved("data", "n1", T0)],
        [new RecordImageReplica("sha256:abc", "node-b", ["node-a"], 1024, Origin)],
        [new ImageReplicated("sha256:abc", "node-b", ["node-a"], 1024, T0)],
        [new ReconcileContainer("c1", "cluster started")],
        [new LinkBlob("lib/x", "sha256:abc", 10, "upload", Origin)],
        [new UnlinkBlob("lib/x", "sha256:abc", Origin)],
        [new PushManifest("lib/x", "sha256:m", "application/vnd.oci.image.manifest.v1+json", 100, "sha256:s", "text/plain",
            Labels, ["sha256:abc"], [], "v1", Origin)],
        [new DeleteTag("lib/x", "v1", Origin)],
        [new DeleteManifest("lib/x", "sha256:m", Origin)],
        [new RepositoryCommandAccepted("lib/x", [new BlobLinked("lib/x", "sha256:abc", 10, "upload", T0), new TagDeleted("lib/x", "v1", "sha256:m", T0)], 2)],
        [new RepositoryCommandRejected("lib/x", "MANIFEST_BLOB_UNKNOWN", "blob unknown to registry", "sha256:abc")],
        [new BlobLinked("lib/x", "sha256:abc", 10, "mount from lib/y", T0)],
        [new BlobUnlinked("lib/x", "sha256:abc", T0)],
        [new ManifestPushed("lib/x", "sha256:m", "application/vnd.oci.image.index.v1+json", 100, null, null, null, [], ["sha256:c"], T0)],
        [new ManifestTagged("lib/x", "v1", "sha256:m", "sha256:old", T0)],
        [new TagDeleted("lib/x", "v1", "sha256:m", T0)],
        [new ManifestDeleted("lib/x", "sha256:m", T0)],
        [new ContainerHealthChanged("c1", 2, HealthStatus.Unhealthy, 3, new HealthcheckResult(T0, T0, 1, "no\n"), T0)],
        [new ContainerHealthProbed("c1", 2, HealthStatus.Starting, 1, new HealthcheckResult(T0, T0, -1, "Health check exceeded timeout (1s)"))],
    ];

    [Fact]
    public void Every_message_type_in_Contracts_has_a_manifest_code_and_a_sample()
    {
        var messageTypes = typeof(IFlotillaMessage).Assembly.GetTypes()
            .Where(t => typeof(IFlotillaMessage).IsAssignableFrom(t) && t is { IsInterface: false, IsAbstract: false })
            .ToHashSet();
        Assert.Equal(messageTypes.OrderBy(t => t.Name), WireManifest.Types.OrderBy(t => t.Name));
        Assert.Equal(messageTypes.OrderBy(t => t.Name), Samples().Select(s => s[0].GetType()).OrderBy(t => t.Name));
    }

    [Fact]
    public void Manifest_codes_are_unique()
    {
        Assert.Equal(WireManifest.CodeOf.Count, WireManifest.CodeOf.Values.Distinct().Count());
    }

    [Fact]
    public void Akka_picks_the_MessagePack_serializer_for_contracts_when_bound()
    {
        var system = ActorSystem.Create("bound", ConfigurationFactory.ParseString(SerializerBinding.Hocon));
        try
        {
            var serializer = system.Serialization.FindSerializerFor(new GetContainer("x"));
            Assert.IsType<MessagePackAkkaSerializer>(serializer);
            Assert.Equal(MessagePackAkkaSerializer.SerializerId, serializer.Identifier);
        }
        finally
        {
            system.Terminate().Wait(TimeSpan.FromSeconds(10));
        }
    }

    [Theory]
    [MemberData(nameof(Samples))]
    public void Round_trips_through_MessagePack(object message)
    {
        var serializer = new MessagePackAkkaSerializer((ExtendedActorSystem)_system);
        var manifest = serializer.Manifest(message);
        var bytes = serializer.ToBinary(message);
        var back = serializer.FromBinary(bytes, manifest);

        Assert.Equal(message.GetType(), back.GetType());
        // Records compare collections by reference, so compare the serialized forms instead.
        Assert.Equal(bytes, serializer.ToBinary(back));
        Assert.Equal(System.Text.Json.JsonSerializer.Serialize(message, message.GetType()),
            System.Text.Json.JsonSerializer.Serialize(back, back.GetType()));
    }

    [Fact]
    public void Unknown_manifest_is_refused()
    {
        var serializer = new MessagePackAkkaSerializer((ExtendedActorSystem)_system);
        Assert.Throws<System.Runtime.Serialization.SerializationException>(() => serializer.FromBinary([0x90], "nope"));
    }

    [Fact]
    public void Garbage_payload_is_refused_not_misread()
    {
        var serializer = new MessagePackAkkaSerializer((ExtendedActorSystem)_system);
        Assert.ThrowsAny<Exception>(() => serializer.FromBinary([0xc1, 0xff, 0x00], "c.create"));
    }
}

/// <summary>The serializer binding as plain HOCON, for TestKit systems built without Akka.Hosting.</summary>
public static class SerializerBinding
{
    public const string Hocon = """
        akka.loglevel = WARNING
        akka.actor {
          serializers.flotilla-msgpack = "Flotilla.Cluster.Serialization.MessagePackAkkaSerializer, Flotilla.Cluster"
          serialization-bindings {
            "Flotilla.Contracts.Wire.IFlotillaMessage, Flotilla.Contracts" = flotilla-msgpack
          }
          serialization-identifiers {
            "Flotilla.Cluster.Serialization.MessagePackAkkaSerializer, Flotilla.Cluster" = 487
          }
        }
        """;
}
