using System.Text.Json;
using Flotilla.Cluster.Audit;
using Flotilla.Gateway.DockerApi;
using Xunit;

namespace Flotilla.Tests.Audit;

/// <summary>Our stored events as Docker's event messages, and Docker's event filters, without a store.</summary>
public class DockerEventMappingSpec
{
    private static readonly DateTimeOffset At = new(2026, 11, 27, 12, 0, 0, 500, TimeSpan.Zero);

    private static AuditEntry Entry(string stream, string type, string json, string node = "n1") =>
        new(1, At, stream, 1, type, "u", node, "c", null, JsonDocument.Parse(json).RootElement);

    // The created event comes first, so the container's facts are known without asking the store.
    private readonly DockerActors _actors = new(null!);

    [Fact]
    public async Task Container_events_carry_image_name_and_labels()
    {
        var created = await _actors.MapAsync(Entry("container-abc", "container_created",
            """{"ContainerId":"abc","Name":"web","Definition":{"Image":"busybox","Labels":{"tier":"db"}}}"""), default);
        var exited = await _actors.MapAsync(Entry("container-abc", "container_exited", """{"ContainerId":"abc","ExitCode":3,"OomKilled":true}"""), default);
        var killed = await _actors.MapAsync(Entry("container-abc", "container_killed", """{"ContainerId":"abc","Signal":"SIGKILL"}"""), default);
        var exec = await _actors.MapAsync(Entry("container-abc", "container_exec_started", """{"ContainerId":"abc","ExecId":"e1","Command":["sh","-c","ls"]}"""), default);

        Assert.Equal("create", created.Single().Action);
        Assert.Equal(["oom", "die"], exited.Select(e => e.Action));
        var die = exited[1];
        Assert.Equal(new Dictionary<string, string> { ["tier"] = "db", ["image"] = "busybox", ["name"] = "web", ["exitCode"] = "3" }, die.Actor.Attributes);
        Assert.Equal(("die", "abc", "busybox"), (die.Status, die.Id, die.From));
        Assert.Equal(At.ToUnixTimeSeconds(), die.Time);
        Assert.Equal(At.ToUnixTimeMilliseconds() * 1_000_000, die.TimeNano);
        Assert.Equal("9", killed.Single().Actor.Attributes["signal"]);
        Assert.Equal(["exec_create: sh -c ls", "exec_start: sh -c ls"], exec.Select(e => e.Action));
    }

    [Fact]
    public async Task Image_pulls_and_pushes_are_named_by_reference()
    {
        var pulled = await _actors.MapAsync(Entry("image-sha256:1", "image_pulled",
            """{"ImageId":"sha256:1","Reference":"docker.io/library/busybox:latest"}"""), default);
        var pushed = await _actors.MapAsync(Entry("image-sha256:1", "image_pushed",
            """{"ImageId":"sha256:1","Reference":"127.0.0.1:5000/me/app:1"}"""), default);
        var tagged = await _actors.MapAsync(Entry("image-sha256:1", "image_tagged", """{"ImageId":"sha256:1","Reference":"docker.io/library/busybox:1"}"""), default);
        var registered = await _actors.MapAsync(Entry("image-sha256:1", "image_registered", """{"ImageId":"sha256:1","Source":"Pulled"}"""), default);

        Assert.Equal(("pull", "busybox:latest"), (pulled.Single().Action, pulled.Single().Actor.ID));
        Assert.Equal(("push", "127.0.0.1:5000/me/app:1"), (pushed.Single().Action, pushed.Single().Actor.ID));
        Assert.Equal(("tag", "sha256:1", "busybox:1"), (tagged.Single().Action, tagged.Single().Actor.ID, tagged.Single().Actor.Attributes["name"]));
        Assert.Empty(registered);
        Assert.Null(pulled.Single().From);
    }

    [Theory]
    [InlineData("""{"container":{"ab":true}}""", true)]
    [InlineData("""{"container":{"web":true}}""", true)]
    [InlineData("""{"container":{"zz":true}}""", false)]
    [InlineData("""{"event":{"die":true}}""", true)]
    [InlineData("""{"event":{"start":true}}""", false)]
    [InlineData("""{"type":{"image":true}}""", false)]
    [InlineData("""{"image":{"busybox:latest":true}}""", true)]
    [InlineData("""{"label":{"tier=db":true}}""", true)]
    [InlineData("""{"label":{"tier=web":true}}""", false)]
    [InlineData("""{"label":{"tier":true}}""", true)]
    [InlineData("""{"node":{"n1":true}}""", true)]
    [InlineData("""{"node":{"n2":true}}""", false)]
    [InlineData("""{"volume":{"v":true}}""", false)]
    public void Docker_filters_match_as_moby_does(string filters, bool expected)
    {
        var die = new DockerEvent("die", "abc", "busybox", "container", "die",
            new DockerActor("abc", new() { ["image"] = "busybox", ["name"] = "web", ["tier"] = "db" }), "local", 1, 1);
        Assert.Equal(expected, EventsEndpoint.Matches(DockerFilters.Parse(filters), die, "n1"));
    }
}
