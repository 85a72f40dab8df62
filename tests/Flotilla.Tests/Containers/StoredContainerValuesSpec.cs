using System.Text;
using Flotilla.Cluster.Containers;
using Flotilla.Cluster.EventStore;
using Flotilla.Contracts.Containers;
using Marten;
using MessagePack;
using MessagePack.Resolvers;
using Xunit;

namespace Flotilla.Tests.Containers;

/// <summary>
/// Status, restart policy, wait condition and signal are typed values; events stored while they were strings still
/// read, and what is written now is stored with the same words.
/// </summary>
public class StoredContainerValuesSpec
{
    private static readonly ISerializer Serializer = MakeSerializer();

    private static ISerializer MakeSerializer()
    {
        var options = new StoreOptions();
        FlotillaStore.Configure(options, "Host=localhost");
        return options.Serializer();
    }

    private static T Read<T>(string json)
    {
        using var stream = new MemoryStream(Encoding.UTF8.GetBytes(json));
        return Serializer.FromJson<T>(stream);
    }

    // Written by the store before the values were typed (ContainerCreated with its definition, as stored then).
    private const string CreatedAsStored = """
        {"ContainerId":"c1","Name":"web","Definition":{"Image":"busybox","ImageId":"sha256:abc","Entrypoint":[],"Cmd":["sh"],"Env":[],"WorkingDir":"","User":"","Hostname":"","Tty":false,"OpenStdin":false,"StdinOnce":false,"Labels":{},"StopSignal":"QUIT","StopTimeout":null,"Mounts":[],"NetworkMode":"none","Memory":0,"NanoCpus":0,"CpuShares":0,"PidsLimit":0,"RestartPolicy":{"Name":"on-failure","MaximumRetryCount":3,"IsNone":false},"AutoRemove":false,"ReadonlyRootfs":false,"CapAdd":[],"CapDrop":[],"Privileged":false,"NoNewPrivileges":false,"ImageLayers":[],"ConfigJson":"{}","HostConfigJson":"{}","LogSizeMax":0,"Args":["sh"]},"Node":"n1","At":"2026-01-02T03:04:05+00:00"}
        """;

    [Theory]
    [InlineData("SIGKILL")]
    [InlineData("KILL")]
    [InlineData("9")]
    public void Events_stored_with_string_values_still_read_and_fold(string killSignal)
    {
        var created = Read<ContainerCreated>(CreatedAsStored);
        Assert.Equal(new RestartPolicy(RestartPolicyName.OnFailure, 3), created.Definition.RestartPolicy);
        Assert.Equal(Signal.Quit, created.Definition.StopSignal);
        var stopped = Read<ContainerStopped>("""{"ContainerId":"c1","Signal":"TERM","TimeoutSeconds":10,"At":"2026-01-02T03:04:05+00:00"}""");
        Assert.Equal(Signal.Term, stopped.Signal);
        var killed = Read<ContainerKilled>($$"""{"ContainerId":"c1","Signal":"{{killSignal}}","At":"2026-01-02T03:04:05+00:00"}""");
        Assert.Equal(Signal.Kill, killed.Signal);

        var state = ContainerFold.Replay("c1", [created, new ContainerStarted("c1", 1, "n1", 42, created.At), killed]);
        Assert.Equal(DesiredState.Stopped, state.Desired);
    }

    [Fact]
    public void Typed_values_are_stored_with_the_words_stored_before()
    {
        var created = Read<ContainerCreated>(CreatedAsStored);
        var json = Serializer.ToJson(created);
        Assert.Contains("\"RestartPolicy\":{\"Name\":\"on-failure\",\"MaximumRetryCount\":3", json);
        Assert.Contains("\"StopSignal\":\"QUIT\"", json);
        Assert.Contains("\"Signal\":\"KILL\"", Serializer.ToJson(new ContainerKilled("c1", Signal.Parse("SIGKILL"), created.At)));
    }

    [Fact]
    public void On_the_wire_signals_and_restart_policies_stay_strings()
    {
        var options = MessagePackSerializerOptions.Standard.WithResolver(StandardResolver.Instance);
        var kill = MessagePackSerializer.ConvertToJson(MessagePackSerializer.Serialize(new KillContainer("c1", Signal.Kill, RequestOriginForTest()), options));
        Assert.Contains("\"Signal\":\"KILL\"", kill);
        var created = Read<ContainerCreated>(CreatedAsStored);
        var wire = MessagePackSerializer.Serialize<IContainerEvent>(created, options);
        Assert.Contains("\"Name\":\"on-failure\"", MessagePackSerializer.ConvertToJson(wire, options));
        var back = (ContainerCreated)MessagePackSerializer.Deserialize<IContainerEvent>(wire, options);
        Assert.Equal(created.Definition.RestartPolicy, back.Definition.RestartPolicy);
        Assert.Equal(Signal.Quit, back.Definition.StopSignal);
        var wait = MessagePackSerializer.Deserialize<WaitForContainer>(MessagePackSerializer.Serialize(new WaitForContainer("c1", WaitCondition.NextExit), options), options);
        Assert.Equal(WaitCondition.NextExit, wait.Condition);
    }

    private static Flotilla.Contracts.RequestOrigin RequestOriginForTest() => Flotilla.Contracts.RequestOrigin.System();

    [Theory]
    [InlineData("KILL", 9, "KILL")]
    [InlineData("SIGKILL", 9, "KILL")]
    [InlineData("sigterm", 15, "TERM")]
    [InlineData("9", 9, "KILL")]
    [InlineData("SIGRTMIN+3", 37, "RTMIN+3")]
    [InlineData("RTMAX", 64, "RTMAX")]
    [InlineData("IOT", 6, "ABRT")]
    public void Signals_parse_from_the_forms_Docker_accepts(string text, int number, string name)
    {
        var signal = Signal.Parse(text);
        Assert.Equal((number, name), (signal.Number, signal.Name));
    }

    [Theory]
    [InlineData("FOO")]
    [InlineData("0")]
    [InlineData("65")]
    [InlineData("RTMIN+31")]
    [InlineData("")]
    public void Other_words_are_not_signals(string text)
    {
        Assert.False(Signal.TryParse(text, out _));
        Assert.Equal($"Invalid signal: {text}", Assert.Throws<FormatException>(() => Signal.Parse(text)).Message);
    }
}
