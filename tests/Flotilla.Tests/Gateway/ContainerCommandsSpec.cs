using System.Text.Json;
using Flotilla.Tests.Support;
using Marten;
using Xunit;

namespace Flotilla.Tests.Gateway;

/// <summary>Container lifecycle through the real docker CLI against the all-in-one host, with real runc containers.</summary>
public class ContainerCommandsSpec(RunningFlotilla flotilla) : IClassFixture<RunningFlotilla>, IAsyncLifetime
{
    private const string Image = "testbox:1";

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

    private async Task<JsonElement> Inspect(string container) =>
        JsonDocument.Parse(await DockerOk("inspect", container)).RootElement[0];

    [Fact]
    public async Task Run_detached_ps_inspect_logs_stop_rm()
    {
        var id = (await DockerOk("run", "-d", "--name", "life", Image, "sh", "-c", "echo out; echo err >&2; exec sleep 300")).Trim();
        Assert.Matches("^[0-9a-f]{64}$", id);
        Assert.Contains("life", await DockerOk("ps", "--format", "{{.Names}} {{.Status}}"));

        var state = (await Inspect("life")).GetProperty("State");
        Assert.Equal("running", state.GetProperty("Status").GetString());
        Assert.True(state.GetProperty("Pid").GetInt32() > 0);

        Assert.True(await Eventually.TrueAsync(async () => (await flotilla.RunDockerAsync("logs", "life")).Stdout.Contains("out"), TimeSpan.FromSeconds(10)));
        var logs = await flotilla.RunDockerAsync("logs", "life");
        Assert.Equal("out\n", logs.Stdout);
        Assert.Equal("err\n", logs.Stderr);
        var stamped = await flotilla.RunDockerAsync("logs", "-t", "--tail", "1", "life");
        Assert.Matches(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (out|err)\n$", stamped.Stdout + stamped.Stderr);

        Assert.Equal("life\n", await DockerOk("stop", "-t", "1", "life"));
        var stopped = (await Inspect("life")).GetProperty("State");
        Assert.Equal("exited", stopped.GetProperty("Status").GetString());
        Assert.Equal(137, stopped.GetProperty("ExitCode").GetInt32());
        Assert.DoesNotContain("life", await DockerOk("ps", "--format", "{{.Names}}"));
        Assert.Contains("life", await DockerOk("ps", "-a", "--format", "{{.Names}}"));

        await DockerOk("rm", "life");
        var gone = await flotilla.RunDockerAsync("inspect", "life");
        Assert.NotEqual(0, gone.ExitCode);

        await using var store = flotilla.OpenStore();
        await using var session = store.QuerySession();
        var events = (await session.Events.FetchStreamAsync("container-" + id)).Select(e => e.EventTypeName).ToList();
        Assert.Equal(["container_created", "container_placed", "container_started", "container_stopped", "container_exited", "container_removed"], events);
    }

    [Fact]
    public async Task Nsenter_into_State_Pid_sees_the_containers_namespaces()
    {
        await DockerOk("run", "-d", "--name", "ns", "--hostname", "inside", Image, "sleep", "300");
        var pid = (await Inspect("ns")).GetProperty("State").GetProperty("Pid").GetInt32();
        var result = await ProcessRunner.RunAsync("nsenter", ["--target", pid.ToString(), "--mount", "--uts", "--ipc", "--net", "--pid", "sh", "-c", "hostname; cat /hello.txt; ls /sys/class/net"]);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal("inside\nhello from flotilla\nlo\n", result.Stdout);
        await DockerOk("rm", "-f", "ns");
    }

    [Fact]
    public async Task Kill_restart_pause_unpause_and_rename()
    {
        await DockerOk("run", "-d", "--name", "ctl", Image, "sleep", "300");
        var firstPid = (await Inspect("ctl")).GetProperty("State").GetProperty("Pid").GetInt32();
        await DockerOk("restart", "-t", "0", "ctl");
        var secondPid = (await Inspect("ctl")).GetProperty("State").GetProperty("Pid").GetInt32();
        Assert.NotEqual(firstPid, secondPid);

        await DockerOk("pause", "ctl");
        Assert.Contains("(Paused)", await DockerOk("ps", "--filter", "name=ctl", "--format", "{{.Status}}"));
        Assert.Equal("paused", (await Inspect("ctl")).GetProperty("State").GetProperty("Status").GetString());
        await DockerOk("unpause", "ctl");

        await DockerOk("rename", "ctl", "ctl2");
        Assert.Equal("/ctl2", (await Inspect("ctl2")).GetProperty("Name").GetString());

        await DockerOk("kill", "-s", "KILL", "ctl2");
        Assert.True(await Eventually.TrueAsync(async () =>
            (await Inspect("ctl2")).GetProperty("State").GetProperty("Status").GetString() == "exited", TimeSpan.FromSeconds(10)));
        var killAgain = await flotilla.RunDockerAsync("kill", "ctl2");
        Assert.Contains("is not running", killAgain.Stderr);
        await DockerOk("rm", "ctl2");
    }

    [Fact]
    public async Task Restart_policy_on_failure_retries_then_gives_up()
    {
        await DockerOk("run", "-d", "--name", "flaky", "--restart", "on-failure:2", Image, "sh", "-c", "exit 3");
        Assert.True(await Eventually.TrueAsync(async () =>
        {
            var s = await Inspect("flaky");
            return s.GetProperty("RestartCount").GetInt32() == 2 && s.GetProperty("State").GetProperty("Status").GetString() == "exited";
        }, TimeSpan.FromSeconds(20)), "restarted twice, then stayed exited");
        Assert.Equal(3, (await Inspect("flaky")).GetProperty("State").GetProperty("ExitCode").GetInt32());
        await DockerOk("rm", "flaky");
    }

    [Fact]
    public async Task Auto_remove_deletes_the_container_after_it_exits()
    {
        var ephemeral = (await DockerOk("run", "-d", "--rm", "--name", "ephemeral", Image, "true")).Trim();
        Assert.True(await Eventually.TrueAsync(async () =>
            (await flotilla.RunDockerAsync("inspect", "ephemeral")).ExitCode != 0, TimeSpan.FromSeconds(15)));
        // Its files (rootfs mount, writable layer, logs) follow the record shortly after.
        Assert.True(await Eventually.TrueAsync(() => Task.FromResult(!Directory.Exists(Path.Combine(flotilla.DataRoot, "ctr", ephemeral))),
            TimeSpan.FromSeconds(15)), "the auto-removed container's files are still there");
    }

    [Fact]
    public async Task Create_then_start_with_env_workdir_user_and_a_bind_mount()
    {
        var host = Path.Combine(flotilla.DataRoot, "bind-src");
        Directory.CreateDirectory(host);
        await File.WriteAllTextAsync(Path.Combine(host, "data.txt"), "from host");
        await DockerOk("create", "--name", "cfg", "-e", "GREETING=hi", "-w", "/tmp", "-u", "app", "-v", $"{host}:/data:ro", Image,
            "sh", "-c", "echo $GREETING $(pwd) $(id -u) $(cat /data/data.txt); touch /data/x 2>/dev/null || echo read-only");
        Assert.Equal("created", (await Inspect("cfg")).GetProperty("State").GetProperty("Status").GetString());
        await DockerOk("start", "cfg");
        var wait = await DockerOk("wait", "cfg");
        Assert.Equal("0", wait.Trim());
        Assert.Equal("hi /tmp 1000 from host\nread-only\n", await DockerOk("logs", "cfg"));
        await DockerOk("rm", "cfg");
    }

    [Fact]
    public async Task Of_creates_racing_for_one_name_exactly_one_wins()
    {
        // The name is checked by the store's unique index at the append, not by a read before it, so there is no window
        // in which two creates both see the name free.
        var results = await Task.WhenAll(Enumerable.Range(0, 6).Select(_ => flotilla.RunDockerAsync("create", "--name", "raced", Image)));
        var winner = Assert.Single(results, r => r.ExitCode == 0).Stdout.Trim();
        foreach (var loser in results.Where(r => r.ExitCode != 0))
            Assert.Contains($"Conflict. The container name \"/raced\" is already in use by container \"{winner}\"", loser.Stderr);
        var listed = await DockerOk("ps", "-a", "--filter", "name=raced", "--format", "{{.ID}}");
        Assert.Equal(winner[..12], listed.Trim());
        await DockerOk("rm", "raced");
        // Once removed the name is free again.
        await DockerOk("create", "--name", "raced", Image);
        await DockerOk("rm", "raced");
    }

    [Fact]
    public async Task Docker_errors_for_bad_requests()
    {
        var unknownImage = await flotilla.RunDockerAsync("create", "no-such-image:9");
        Assert.NotEqual(0, unknownImage.ExitCode);

        await DockerOk("create", "--name", "taken", Image);
        var conflict = await flotilla.RunDockerAsync("create", "--name", "taken", Image);
        Assert.Contains("Conflict. The container name \"/taken\" is already in use by container", conflict.Stderr);

        var badRestart = await flotilla.RunDockerAsync("create", "--restart", "always", "--rm", Image);
        Assert.NotEqual(0, badRestart.ExitCode);

        var missing = await flotilla.RunDockerAsync("start", "nope-container");
        Assert.Contains("No such container: nope-container", missing.Stderr);

        var notFound = await flotilla.RunDockerAsync("start", "taken-not");
        Assert.NotEqual(0, notFound.ExitCode);

        var noCommand = await flotilla.RunDockerAsync("run", "-d", Image, "/no/such/binary");
        Assert.NotEqual(0, noCommand.ExitCode);
        Assert.Contains("no such file", noCommand.Stderr, StringComparison.OrdinalIgnoreCase);

        var running = (await DockerOk("run", "-d", Image, "sleep", "300")).Trim();
        var rmRunning = await flotilla.RunDockerAsync("rm", running);
        Assert.Contains("container is running: stop the container before removing or force remove", rmRunning.Stderr);
        await DockerOk("rm", "-f", running, "taken");
    }

    [Fact]
    public async Task Security_defaults_as_dockers()
    {
        await DockerOk("run", "-d", "--name", "sec", Image, "sleep", "300");
        Assert.True(await Eventually.TrueAsync(async () => (await flotilla.RunDockerAsync("logs", "sec")).ExitCode == 0, TimeSpan.FromSeconds(5)));
        var pid = (await Inspect("sec")).GetProperty("State").GetProperty("Pid").GetInt32();
        var status = await File.ReadAllTextAsync($"/proc/{pid}/status");
        Assert.Contains("CapEff:\t00000000a80425fb", status);
        Assert.Contains("Seccomp:\t2", status);
        await DockerOk("rm", "-f", "sec");
    }

    [Fact]
    public async Task Resource_limits_and_security_options_reach_the_kernel()
    {
        await DockerOk("run", "-d", "--name", "limited", "-m", "64m", "--cpus", "0.5", "--pids-limit", "50", "--read-only",
            "--cap-drop", "NET_RAW", Image, "sleep", "300");
        var id = (await Inspect("limited")).GetProperty("Id").GetString()!;
        var pid = (await Inspect("limited")).GetProperty("State").GetProperty("Pid").GetInt32();
        var cgroups = await File.ReadAllLinesAsync($"/proc/{pid}/cgroup");
        string Cgroup(string controller) => cgroups.Select(l => l.Split(':', 3)).First(p => p[1].Split(',').Contains(controller))[2];

        Assert.Equal((64 * 1024 * 1024).ToString(), (await File.ReadAllTextAsync($"/sys/fs/cgroup/memory{Cgroup("memory")}/memory.limit_in_bytes")).Trim());
        Assert.Equal("50", (await File.ReadAllTextAsync($"/sys/fs/cgroup/pids{Cgroup("pids")}/pids.max")).Trim());
        Assert.Equal("50000", (await File.ReadAllTextAsync($"/sys/fs/cgroup/cpu{Cgroup("cpu")}/cpu.cfs_quota_us")).Trim());
        // Docker's defaults minus NET_RAW (bit 13).
        Assert.Contains("CapEff:\t00000000a80405fb", await File.ReadAllTextAsync($"/proc/{pid}/status"));

        var write = await flotilla.RunDockerAsync("exec", "limited", "touch", "/new-file");
        Assert.NotEqual(0, write.ExitCode);
        Assert.Contains("Read-only file system", write.Stderr);
        Assert.StartsWith(id, (await DockerOk("ps", "-q", "--no-trunc", "--filter", "name=limited")).Trim());
        await DockerOk("rm", "-f", "limited");
    }

    [Fact]
    public async Task Privileged_gets_every_capability_of_the_host_and_no_seccomp()
    {
        await DockerOk("run", "-d", "--name", "priv", "--privileged", Image, "sleep", "300");
        var pid = (await Inspect("priv")).GetProperty("State").GetProperty("Pid").GetInt32();
        var status = await File.ReadAllTextAsync($"/proc/{pid}/status");
        Assert.Contains("Seccomp:\t0", status);
        var capEff = status.Split('\n').First(l => l.StartsWith("CapEff:")).Split('\t')[1];
        Assert.NotEqual("00000000a80425fb", capEff);
        await DockerOk("rm", "-f", "priv");
    }

    [Fact]
    public async Task Ps_size_shows_the_writable_layer()
    {
        await DockerOk("run", "-d", "--name", "sized", Image, "sh", "-c", "head -c 300000 /bin/busybox > /tmp/blob; sleep 300");
        Assert.True(await Eventually.TrueAsync(async () =>
        {
            var json = JsonDocument.Parse((await flotilla.Docker.GetStringAsync("containers/json?size=1"))).RootElement;
            return json.EnumerateArray().Any(c => c.GetProperty("Names")[0].GetString() == "/sized" && c.GetProperty("SizeRw").GetInt64() >= 300000);
        }, TimeSpan.FromSeconds(10)));
        Assert.Contains("300kB", await DockerOk("ps", "-s", "--filter", "name=sized", "--format", "{{.Size}}"));
        await DockerOk("rm", "-f", "sized");
    }

    [Fact]
    public async Task Cp_into_a_created_container_is_there_when_it_starts()
    {
        await DockerOk("create", "--name", "cpin", Image, "cat", "/tmp/in.txt");
        var local = Path.Combine(flotilla.DataRoot, "in.txt");
        await File.WriteAllTextAsync(local, "copied before start\n");
        await DockerOk("cp", local, "cpin:/tmp/in.txt");
        await DockerOk("start", "-a", "cpin");
        Assert.Equal("copied before start\n", await DockerOk("logs", "cpin"));
        await DockerOk("rm", "cpin");
    }
}
