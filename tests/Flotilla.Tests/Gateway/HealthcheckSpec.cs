using System.Globalization;
using System.Text;
using System.Text.Json;
using Docker.DotNet;
using Docker.DotNet.Models;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Storage;
using Flotilla.Tests.Images;
using Flotilla.Tests.Support;
using Marten;
using Xunit;

namespace Flotilla.Tests.Gateway;

/// <summary>
/// Healthchecks as dockerd runs them (issue 16): <c>--health-*</c> and the image's HEALTHCHECK, probed by the
/// container's node, <c>State.Health</c> with its log, <c>health_status</c> events on changes only, the
/// <c>(healthy)</c> status and the <c>health</c> filter of <c>docker ps</c>, through the real docker CLI and Docker.DotNet.
/// </summary>
[TestCaseOrderer(RunsLastOrderer.TypeName, RunsLastOrderer.AssemblyName)]
public class HealthcheckSpec(RunningFlotilla flotilla) : IClassFixture<RunningFlotilla>, IAsyncLifetime
{
    private const string Image = "testbox:1";
    private const string HealthyImage = "checked:1";

    public async Task InitializeAsync()
    {
        if ((await flotilla.RunDockerAsync("image", "inspect", Image)).ExitCode == 0) return;
        Directory.CreateDirectory(flotilla.DataRoot);
        var path = Path.Combine(flotilla.DataRoot, "busybox-rootfs.tar");
        await File.WriteAllBytesAsync(path, BusyboxImage.Rootfs());
        await DockerOk("import", "-c", "CMD [\"/bin/sh\"]", path, Image);

        // An image whose config has a HEALTHCHECK (as a registry's would), loaded as docker save writes it.
        var layer = BusyboxImage.Rootfs();
        var config = OciJson.Serialize(new ImageConfigFile
        {
            Created = ArchiveFixtures.Created,
            Architecture = HostPlatform.Architecture,
            Os = "linux",
            Config = new ContainerConfig
            {
                Cmd = ["sleep", "300"],
                Env = ["PATH=/bin"],
                Healthcheck = JsonDocument.Parse("""{"Test":["CMD","test","-f","/hello.txt"],"Interval":500000000,"Retries":4}""").RootElement,
            },
            RootFs = new RootFs { DiffIds = [Digest.Of(layer).ToString()] },
            History = [new HistoryEntry { Created = ArchiveFixtures.Created, CreatedBy = "test" }],
        });
        var archive = Path.Combine(flotilla.DataRoot, "checked.tar");
        await File.WriteAllBytesAsync(archive, ArchiveFixtures.DockerArchive(new TestImage([layer], config), [HealthyImage]));
        await DockerOk("load", "-i", archive);
    }

    public Task DisposeAsync() => Task.CompletedTask;

    private async Task<string> DockerOk(params string[] args)
    {
        var result = await flotilla.RunDockerAsync(args);
        Assert.True(result.ExitCode == 0, $"docker {string.Join(' ', args)}: {result}");
        return result.Stdout;
    }

    private async Task<JsonElement> Inspect(string container) =>
        JsonDocument.Parse(await DockerOk("inspect", container)).RootElement[0];

    private async Task<string?> HealthStatus(string container) =>
        (await Inspect(container)).GetProperty("State").TryGetProperty("Health", out var h) ? h.GetProperty("Status").GetString() : null;

    private Task<bool> BecomesAsync(string container, string status, int seconds = 30) =>
        Eventually.TrueAsync(async () => await HealthStatus(container) == status, TimeSpan.FromSeconds(seconds), TimeSpan.FromMilliseconds(250));

    private async Task<string> PsStatus(string container) =>
        (await DockerOk("ps", "-a", "--format", "{{.Names}}\t{{.Status}}")).Split('\n').Select(l => l.Split('\t'))
            .Where(l => l[0] == container).Select(l => l[1]).Single();

    private async Task<List<string>> PsNames(string filter) =>
        (await DockerOk("ps", "-a", "--filter", filter, "--format", "{{.Names}}")).Split('\n', StringSplitOptions.RemoveEmptyEntries).ToList();

    [Fact]
    public async Task Health_cmd_goes_starting_unhealthy_healthy_with_its_log_ps_status_filter_and_events_on_changes_only()
    {
        var since = DateTimeOffset.UtcNow.AddSeconds(-1).ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
        // Failures within the 3 s start period do not count: starting, probed every 500 ms; then 2 failures make it unhealthy.
        var id = (await DockerOk("run", "-d", "--name", "hc", "--health-cmd", "test -f /tmp/ok", "--health-interval", "1s", "--health-retries", "2",
            "--health-start-period", "3s", "--health-start-interval", "500ms", Image, "sleep", "300")).Trim();
        await DockerOk("run", "-d", "--name", "plain", Image, "sleep", "300");

        var inspect = await Inspect("hc");
        var check = inspect.GetProperty("Config").GetProperty("Healthcheck");
        Assert.Equal(["CMD-SHELL", "test -f /tmp/ok"], check.GetProperty("Test").EnumerateArray().Select(t => t.GetString()));
        Assert.Equal(1_000_000_000, check.GetProperty("Interval").GetInt64());
        Assert.Equal(3_000_000_000, check.GetProperty("StartPeriod").GetInt64());
        Assert.Equal(500_000_000, check.GetProperty("StartInterval").GetInt64());
        Assert.Equal(2, check.GetProperty("Retries").GetInt32());
        Assert.False(check.TryGetProperty("Timeout", out _), "zero durations are omitted, as dockerd's omitempty");
        Assert.Equal("starting", inspect.GetProperty("State").GetProperty("Health").GetProperty("Status").GetString());
        Assert.False((await Inspect("plain")).GetProperty("State").TryGetProperty("Health", out _), "no Health without a healthcheck");
        Assert.Matches(@"^Up .* \(health: starting\)$", await PsStatus("hc"));
        Assert.Equal(["hc"], await PsNames("health=starting"));
        Assert.Contains("plain", await PsNames("health=none"));
        Assert.DoesNotContain("hc", await PsNames("health=none"));

        Assert.True(await BecomesAsync("hc", "unhealthy"), "unhealthy after the start period and 2 failures");
        Assert.Matches(@"^Up .* \(unhealthy\)$", await PsStatus("hc"));
        Assert.Equal(["hc"], await PsNames("health=unhealthy"));
        Assert.Empty(await PsNames("health=healthy"));
        var failing = (await Inspect("hc")).GetProperty("State").GetProperty("Health");
        Assert.True(failing.GetProperty("FailingStreak").GetInt32() >= 2);
        var failed = failing.GetProperty("Log").EnumerateArray().Last();
        Assert.Equal(1, failed.GetProperty("ExitCode").GetInt32());
        Assert.True(failed.GetProperty("End").GetDateTimeOffset() >= failed.GetProperty("Start").GetDateTimeOffset());

        await DockerOk("exec", "hc", "touch", "/tmp/ok");
        Assert.True(await BecomesAsync("hc", "healthy"), "healthy after the file appears");
        Assert.Matches(@"^Up .* \(healthy\)$", await PsStatus("hc"));
        Assert.Equal(["hc"], await PsNames("health=healthy"));
        // A few more probes, none of them a change.
        await Task.Delay(2500);
        var health = (await Inspect("hc")).GetProperty("State").GetProperty("Health");
        Assert.Equal(0, health.GetProperty("FailingStreak").GetInt32());
        var log = health.GetProperty("Log").EnumerateArray().ToList();
        Assert.Equal(5, log.Count); // the last five, of many more probes
        Assert.Equal(0, log[^1].GetProperty("ExitCode").GetInt32());

        var until = DateTimeOffset.UtcNow.AddSeconds(1).ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
        var events = await DockerOk("events", "--since", since, "--until", until, "--filter", "event=health_status",
            "--filter", "container=" + id, "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}");
        Assert.Equal("container health_status: unhealthy hc\ncontainer health_status: healthy hc\n", events);

        // The store holds the changes, not a record per probe.
        await using (var store = flotilla.OpenStore())
        await using (var session = store.QuerySession())
        {
            var types = (await session.Events.FetchStreamAsync("container-" + id)).Select(e => e.EventTypeName).ToList();
            Assert.Equal(2, types.Count(t => t == "container_health_changed"));
        }

        // dockerd: a stopped monitor reads unhealthy.
        await DockerOk("stop", "-t", "0", "hc");
        Assert.Equal("unhealthy", await HealthStatus("hc"));
        await DockerOk("rm", "-f", "hc", "plain");
    }

    [Fact]
    public async Task Image_HEALTHCHECK_is_honoured_merged_with_the_runs_options_and_no_healthcheck_disables_it()
    {
        await DockerOk("run", "-d", "--name", "img-hc", HealthyImage);
        var check = (await Inspect("img-hc")).GetProperty("Config").GetProperty("Healthcheck");
        Assert.Equal(["CMD", "test", "-f", "/hello.txt"], check.GetProperty("Test").EnumerateArray().Select(t => t.GetString()));
        Assert.True(await BecomesAsync("img-hc", "healthy"), "the image's check runs");

        // dockerd's merge: the run's non-zero fields win, the image fills the rest.
        await DockerOk("create", "--name", "img-merged", "--health-retries", "7", HealthyImage);
        var merged = (await Inspect("img-merged")).GetProperty("Config").GetProperty("Healthcheck");
        Assert.Equal(["CMD", "test", "-f", "/hello.txt"], merged.GetProperty("Test").EnumerateArray().Select(t => t.GetString()));
        Assert.Equal(500_000_000, merged.GetProperty("Interval").GetInt64());
        Assert.Equal(7, merged.GetProperty("Retries").GetInt32());

        await DockerOk("run", "-d", "--name", "img-off", "--no-healthcheck", HealthyImage);
        var off = await Inspect("img-off");
        Assert.Equal(["NONE"], off.GetProperty("Config").GetProperty("Healthcheck").GetProperty("Test").EnumerateArray().Select(t => t.GetString()));
        await Task.Delay(1500);
        Assert.False((await Inspect("img-off")).GetProperty("State").TryGetProperty("Health", out _), "--no-healthcheck: no health");
        Assert.Matches(@"^Up [^(]*$", await PsStatus("img-off"));
        Assert.Contains("img-off", await PsNames("health=none"));
        await DockerOk("rm", "-f", "img-hc", "img-merged", "img-off");
    }

    [Fact]
    public async Task A_probe_past_its_timeout_is_killed_and_fails_and_long_output_is_capped_as_dockerd_caps_it()
    {
        await DockerOk("run", "-d", "--name", "slow", "--health-cmd", "echo started; sleep 42", "--health-timeout", "500ms", "--health-interval", "1s",
            "--health-retries", "1", Image, "sleep", "300");
        await DockerOk("run", "-d", "--name", "chatty", "--health-cmd", "yes | head -c 5000", "--health-interval", "1s", Image, "sleep", "300");

        Assert.True(await BecomesAsync("slow", "unhealthy"), "a probe that outlives its timeout fails");
        var result = (await Inspect("slow")).GetProperty("State").GetProperty("Health").GetProperty("Log").EnumerateArray().Last();
        Assert.Equal(-1, result.GetProperty("ExitCode").GetInt32());
        Assert.Equal("Health check exceeded timeout (500ms): started\n", result.GetProperty("Output").GetString());
        // The timed-out probes do not pile up in the container.
        var ps = await DockerOk("exec", "slow", "ps", "-o", "args");
        Assert.DoesNotContain("sleep 42", ps);

        Assert.True(await BecomesAsync("chatty", "healthy"));
        var output = (await Inspect("chatty")).GetProperty("State").GetProperty("Health").GetProperty("Log").EnumerateArray().Last()
            .GetProperty("Output").GetString()!;
        Assert.Equal(4096 + 3, output.Length);
        Assert.EndsWith("y\n...", output);
        await DockerOk("rm", "-f", "slow", "chatty");
    }

    [Fact]
    public async Task Invalid_healthchecks_and_filters_are_refused_with_dockerds_messages()
    {
        var tooShort = await flotilla.RunDockerAsync("create", "--health-cmd", "true", "--health-interval", "1us", Image);
        Assert.NotEqual(0, tooShort.ExitCode);
        Assert.Contains("Interval in Healthcheck cannot be less than 1ms", tooShort.Stderr);

        var filter = await flotilla.RunDockerAsync("ps", "--filter", "health=sickly");
        Assert.NotEqual(0, filter.ExitCode);
        Assert.Contains("invalid filter 'health=sickly'", filter.Stderr);

        var created = await flotilla.Docker.PostAsync("/v1.51/containers/create", new StringContent(
            $$$"""{"Image":"{{{Image}}}","Cmd":["true"],"Healthcheck":{"Test":["HTTP","http://localhost/"]}}""", Encoding.UTF8, "application/json"));
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, created.StatusCode);
        Assert.Contains("unknown Healthcheck type 'HTTP'", await created.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Docker_DotNet_creates_with_a_healthcheck_and_reads_State_Health_back()
    {
        using var client = new DockerClientConfiguration(new Uri($"tcp://127.0.0.1:{flotilla.DockerPort}")).CreateClient();
        var created = await client.Containers.CreateContainerAsync(new CreateContainerParameters
        {
            Name = "dotnet-hc",
            Image = Image,
            Cmd = ["sleep", "300"],
            Healthcheck = new HealthConfig { Test = ["CMD", "true"], Interval = TimeSpan.FromMilliseconds(500), Retries = 2 },
        });
        await client.Containers.StartContainerAsync(created.ID, new ContainerStartParameters());
        Assert.True(await Eventually.TrueAsync(async () =>
            (await client.Containers.InspectContainerAsync(created.ID)).State.Health?.Status == "healthy", TimeSpan.FromSeconds(30)));
        var inspect = await client.Containers.InspectContainerAsync(created.ID);
        Assert.Equal(["CMD", "true"], inspect.Config.Healthcheck.Test);
        Assert.Equal(TimeSpan.FromMilliseconds(500), inspect.Config.Healthcheck.Interval);
        Assert.Equal(2, inspect.Config.Healthcheck.Retries);
        Assert.Equal(0, inspect.State.Health.FailingStreak);
        var last = inspect.State.Health.Log.Last();
        Assert.Equal(0, last.ExitCode);
        Assert.True(last.End >= last.Start && last.Start > DateTime.UtcNow.AddMinutes(-1));
        await client.Containers.RemoveContainerAsync(created.ID, new ContainerRemoveParameters { Force = true });
    }

    [Fact, RunsLast]
    public async Task After_an_engine_restart_the_recorded_health_stays_and_probes_resume()
    {
        await DockerOk("run", "-d", "--name", "survivor", "--health-cmd", "test -f /tmp/ok", "--health-interval", "1s", "--health-retries", "1",
            Image, "sh", "-c", "touch /tmp/ok; exec sleep 300");
        Assert.True(await BecomesAsync("survivor", "healthy"));

        await flotilla.RestartAsync();

        // Re-adopted with its recorded health (dockerd would say starting again), then probed again: a change shows.
        Assert.Equal("healthy", await HealthStatus("survivor"));
        await DockerOk("exec", "survivor", "rm", "/tmp/ok");
        Assert.True(await BecomesAsync("survivor", "unhealthy"), "the probes resumed after the restart");
        await DockerOk("rm", "-f", "survivor");
    }
}
