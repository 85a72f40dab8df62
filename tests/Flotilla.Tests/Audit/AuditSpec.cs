using System.Globalization;
using System.Net;
using System.Text.Json;
using Flotilla.Tests.Gateway;
using Flotilla.Tests.Support;
using Xunit;

namespace Flotilla.Tests.Audit;

/// <summary>The audit trail through the native API, the flotilla CLI and the real docker CLI's <c>docker events</c>.</summary>
public class AuditSpec(RunningFlotilla flotilla) : IClassFixture<RunningFlotilla>, IAsyncLifetime
{
    private const string Image = "audbox:1";

    public async Task InitializeAsync()
    {
        if ((await flotilla.RunDockerAsync("image", "inspect", Image)).ExitCode == 0) return;
        Directory.CreateDirectory(flotilla.DataRoot);
        var path = Path.Combine(flotilla.DataRoot, "busybox-rootfs.tar");
        await File.WriteAllBytesAsync(path, BusyboxImage.Rootfs());
        await DockerOk("import", "-c", "CMD [\"/bin/sh\"]", path, Image);
    }

    public Task DisposeAsync() => Task.CompletedTask;

    private async Task<string> DockerOk(params string[] args)
    {
        var result = await flotilla.RunDockerAsync(args);
        Assert.True(result.ExitCode == 0, $"docker {string.Join(' ', args)}: {result}");
        return result.Stdout;
    }

    private async Task<JsonElement> AuditAsync(string query)
    {
        using var response = await flotilla.Native.GetAsync("api/audit?" + query);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        return JsonDocument.Parse(text).RootElement;
    }

    private static List<string> Types(JsonElement page) => page.GetProperty("entries").EnumerateArray().Select(e => e.GetProperty("type").GetString()!).ToList();

    private Task<ProcessResult> FlotillaCli(params string[] args) =>
        ProcessRunner.RunAsync("dotnet", [typeof(Flotilla.Cli.Commands.AuditCommand).Assembly.Location, .. args, "--http", $"127.0.0.1:{flotilla.HttpPort}"],
            env: flotilla.CliEnvironment);

    private static string Unix(DateTimeOffset t) => (t.ToUnixTimeMilliseconds() / 1000.0).ToString("F3", CultureInfo.InvariantCulture);

    [Fact]
    public async Task Docker_run_is_one_story_with_its_user_and_node()
    {
        var id = (await DockerOk("run", "-d", "--name", "story", "--label", "team=audit", Image, "sleep", "300")).Trim();
        var page = await AuditAsync("container=story");
        Assert.Equal(["container_created", "container_placed", "container_started"], Types(page));
        var entries = page.GetProperty("entries").EnumerateArray().ToList();
        var correlation = entries[0].GetProperty("correlationId").GetString()!;
        Assert.False(string.IsNullOrEmpty(correlation));
        Assert.All(entries, e =>
        {
            Assert.Equal(correlation, e.GetProperty("correlationId").GetString());
            Assert.Equal("anonymous@127.0.0.1", e.GetProperty("user").GetString());
            Assert.Equal("gw-node", e.GetProperty("node").GetString());
            Assert.Equal("container", e.GetProperty("kind").GetString());
            Assert.Equal(id, e.GetProperty("id").GetString());
        });

        // The story by its correlation id alone.
        var story = await AuditAsync("correlation=" + correlation);
        Assert.Equal(["container_created", "container_placed", "container_started"], Types(story));

        // The user's and type filters.
        Assert.Contains("container_started", Types(await AuditAsync("user=anonymous@127.0.0.1&type=ContainerStarted")));
        Assert.Empty(Types(await AuditAsync("user=nobody-at-all")));
        Assert.All(Types(await AuditAsync("kind=image")), t => Assert.StartsWith("image_", t));
        await DockerOk("rm", "-f", "story");
    }

    [Fact]
    public async Task Pages_follow_the_cursor_and_formats_are_json_ndjson_and_csv()
    {
        await DockerOk("run", "-d", "--name", "pager", Image, "sh", "-c", "exit 0");
        await DockerOk("wait", "pager");
        var all = await AuditAsync("container=pager&limit=1000");
        var expected = all.GetProperty("entries").EnumerateArray().Select(e => e.GetProperty("sequence").GetInt64()).ToList();
        Assert.True(expected.Count >= 3, all.ToString());

        var seen = new List<long>();
        string? cursor = null;
        do
        {
            var page = await AuditAsync("container=pager&limit=1" + (cursor is null ? "" : "&cursor=" + cursor));
            seen.AddRange(page.GetProperty("entries").EnumerateArray().Select(e => e.GetProperty("sequence").GetInt64()));
            cursor = page.GetProperty("nextCursor").GetString();
        } while (cursor is not null);
        Assert.Equal(expected, seen);

        var newestFirst = await AuditAsync("container=pager&order=desc&limit=1");
        Assert.Equal(expected[^1], newestFirst.GetProperty("entries")[0].GetProperty("sequence").GetInt64());

        var ndjson = await flotilla.Native.GetStringAsync("api/audit?container=pager&format=ndjson");
        var lines = ndjson.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(expected, lines.Select(l => JsonDocument.Parse(l).RootElement.GetProperty("sequence").GetInt64()));

        using var csvResponse = await flotilla.Native.GetAsync("api/audit?container=pager&format=csv");
        Assert.StartsWith("text/csv", csvResponse.Content.Headers.ContentType!.ToString());
        var csv = (await csvResponse.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("sequence,time,kind,id,version,type,user,node,correlation_id,causation_id,data", csv[0]);
        Assert.Equal(expected.Count, csv.Length - 1);
        // The data column is JSON with commas and quotes: quoted, its quotes doubled (a redacted body is compact JSON).
        Assert.Matches(",\"\\{\"\"[A-Za-z]+\"\": ?.*\"\"ContainerId\"\": ?", csv[1]);

        using var bad = await flotilla.Native.GetAsync("api/audit?format=xml");
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        using var unknown = await flotilla.Native.GetAsync("api/audit?kind=spaceship");
        Assert.Equal(HttpStatusCode.BadRequest, unknown.StatusCode);
        using var missing = await flotilla.Native.GetAsync("api/audit?container=no-such-thing");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        await DockerOk("rm", "pager");
    }

    [Fact]
    public async Task Docker_events_since_until_prints_dockers_actions_and_filters()
    {
        var t0 = DateTimeOffset.UtcNow.AddSeconds(-1);
        var id = (await DockerOk("run", "-d", "--name", "evts", "--label", "tier=web", Image, "sh", "-c", "exit 3")).Trim();
        Assert.Equal("3", (await DockerOk("wait", "evts")).Trim());
        await DockerOk("rm", "evts");
        var t1 = DateTimeOffset.UtcNow.AddSeconds(1);

        var json = await DockerOk("events", "--since", Unix(t0), "--until", Unix(t1), "--filter", "container=evts", "--format", "{{json .}}");
        var events = json.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(["create", "start", "die", "destroy"], events.Select(e => e.GetProperty("Action").GetString()));
        var die = events[2];
        Assert.Equal("container", die.GetProperty("Type").GetString());
        Assert.Equal(id, die.GetProperty("Actor").GetProperty("ID").GetString());
        var attributes = die.GetProperty("Actor").GetProperty("Attributes");
        Assert.Equal("3", attributes.GetProperty("exitCode").GetString());
        Assert.Equal("evts", attributes.GetProperty("name").GetString());
        Assert.Equal(Image, attributes.GetProperty("image").GetString());
        Assert.Equal("web", attributes.GetProperty("tier").GetString());
        Assert.Equal("local", die.GetProperty("scope").GetString());
        Assert.True(die.GetProperty("timeNano").GetInt64() / 1_000_000_000 == die.GetProperty("time").GetInt64());

        // Docker's default format, and the event, label and type filters.
        var plain = await DockerOk("events", "--since", Unix(t0), "--until", Unix(t1), "--filter", "event=die", "--filter", "label=tier=web");
        Assert.Single(plain.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains($"container die {id} (exitCode=3, image={Image}, name=evts, tier=web)", plain);
        var images = await DockerOk("events", "--since", Unix(t0), "--until", Unix(t1), "--filter", "type=image");
        Assert.DoesNotContain("container", images);
        var byImage = await DockerOk("events", "--since", Unix(t0), "--until", Unix(t1), "--filter", "image=" + Image, "--filter", "node=gw-node",
            "--format", "{{.Actor.Attributes.name}} {{.Action}}");
        Assert.Contains("evts die", byImage);
        var otherNode = await DockerOk("events", "--since", Unix(t0), "--until", Unix(t1), "--filter", "node=elsewhere");
        Assert.Equal("", otherNode.Trim());
        var durations = await DockerOk("events", "--since", "10m", "--until", "0s", "--filter", "container=" + id[..12], "--format", "{{.Action}}");
        Assert.Contains("destroy", durations);

        var refused = await flotilla.RunDockerAsync("events", "--since", "1m", "--until", "0s", "--filter", "colour=blue");
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("invalid filter 'colour'", refused.Stderr);
    }

    [Fact]
    public async Task Docker_events_follows_new_events_live()
    {
        // Until a moment ahead: the CLI follows live and ends by itself.
        var until = DateTimeOffset.UtcNow.AddSeconds(6);
        var follow = flotilla.RunDockerAsync("events", "--until", Unix(until), "--filter", "container=live", "--format", "{{.Type}} {{.Action}}");
        await Task.Delay(1500);
        await DockerOk("create", "--name", "live", Image, "true");
        var result = await follow;
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal("container create", result.Stdout.Trim());
        await DockerOk("rm", "live");
    }

    [Fact]
    public async Task Native_follow_streams_a_new_event()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        using var response = await flotilla.Native.GetAsync("api/audit?follow=true&kind=container&type=container_created",
            HttpCompletionOption.ResponseHeadersRead, cts.Token);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token));
        var next = reader.ReadLineAsync(cts.Token).AsTask();
        await DockerOk("create", "--name", "followed", Image, "true");
        var line = await next;
        var entry = JsonDocument.Parse(line!).RootElement;
        Assert.Equal("container_created", entry.GetProperty("type").GetString());
        Assert.Equal("followed", entry.GetProperty("data").GetProperty("Name").GetString());
        await DockerOk("rm", "followed");
    }

    [Fact]
    public async Task History_and_time_travel_fold_the_container_as_it_was()
    {
        await DockerOk("run", "-d", "--name", "tt", Image, "sleep", "300");
        await Task.Delay(200);
        var whileRunning = DateTimeOffset.UtcNow;
        await Task.Delay(200);
        await DockerOk("stop", "-t", "0", "tt");
        await Task.Delay(200);
        var afterStop = DateTimeOffset.UtcNow;

        async Task<JsonElement> At(DateTimeOffset at) =>
            JsonDocument.Parse(await flotilla.Native.GetStringAsync($"api/containers/tt?at={Uri.EscapeDataString(at.ToString("O"))}")).RootElement;
        Assert.Equal("running", (await At(whileRunning)).GetProperty("status").GetString());
        var stopped = await At(afterStop);
        Assert.Equal("exited", stopped.GetProperty("status").GetString());
        Assert.Equal(137, stopped.GetProperty("exitCode").GetInt32());
        using var before = await flotilla.Native.GetAsync($"api/containers/tt?at={Uri.EscapeDataString(whileRunning.AddHours(-1).ToString("O"))}");
        Assert.Equal(HttpStatusCode.NotFound, before.StatusCode);

        var inspect = await FlotillaCli("inspect", "--at", whileRunning.ToString("O"), "tt");
        Assert.True(inspect.ExitCode == 0, inspect.ToString());
        Assert.Equal("running", JsonDocument.Parse(inspect.Stdout).RootElement.GetProperty("status").GetString());

        // History outlives the container: found by its name among the stored streams.
        await DockerOk("rm", "tt");
        var history = await FlotillaCli("history", "tt");
        Assert.True(history.ExitCode == 0, history.ToString());
        var lines = history.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("TIME", lines[0]);
        var order = new[] { "container_created", "container_started", "container_stopped", "container_exited", "container_removed" };
        Assert.Equal(order, lines.Skip(1).Select(l => order.FirstOrDefault(l.Contains)).Where(t => t is not null));
        var gone = JsonDocument.Parse(await flotilla.Native.GetStringAsync("api/containers/tt")).RootElement;
        Assert.Equal("removed", gone.GetProperty("status").GetString());
    }

    [Fact]
    public async Task Audit_cli_prints_tables_json_and_exports_ndjson()
    {
        await DockerOk("create", "--name", "clied", Image, "true");
        var table = await FlotillaCli("audit", "--since", "1h", "--type", "container_created", "--container", "clied");
        Assert.True(table.ExitCode == 0, table.ToString());
        Assert.Contains("container_created", table.Stdout);
        Assert.Contains("anonymous@127.0.0.1", table.Stdout);

        var json = await FlotillaCli("audit", "--since", "1h", "--user", "anonymous@127.0.0.1", "-o", "json", "--container", "clied");
        Assert.True(json.ExitCode == 0, json.ToString());
        Assert.Equal("container_created", JsonDocument.Parse(json.Stdout).RootElement.GetProperty("entries")[0].GetProperty("type").GetString());

        var imageHistory = await FlotillaCli("history", Image);
        Assert.True(imageHistory.ExitCode == 0, imageHistory.ToString());
        Assert.Contains("image_registered", imageHistory.Stdout);
        Assert.Contains("image_tagged", imageHistory.Stdout);

        // --follow prints what happens from now on (here bounded by --until, so the process ends by itself).
        var until = DateTimeOffset.UtcNow.AddSeconds(5).ToString("O");
        var follow = FlotillaCli("audit", "--follow", "--until", until, "--kind", "container", "--type", "container_renamed");
        await Task.Delay(2500);
        await DockerOk("rename", "clied", "clied2");
        var followed = await follow;
        Assert.True(followed.ExitCode == 0, followed.ToString());
        Assert.Contains("container_renamed", followed.Stdout);
        await DockerOk("rename", "clied2", "clied");

        var export = await FlotillaCli("audit", "export", "--since", "1h");
        Assert.True(export.ExitCode == 0, export.ToString());
        var lines = export.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var sequences = lines.Select(l => JsonDocument.Parse(l).RootElement.GetProperty("sequence").GetInt64()).ToList();
        Assert.Equal(sequences.Order(), sequences);
        Assert.Contains(lines, l => l.Contains("\"clied\""));
        await DockerOk("rm", "clied");
    }
}
