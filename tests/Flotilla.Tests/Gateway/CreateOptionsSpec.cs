using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using Docker.DotNet;
using Docker.DotNet.Models;
using Flotilla.Tests.Support;
using Marten;
using Xunit;

namespace Flotilla.Tests.Gateway;

/// <summary>
/// Issue 16, item 3: every create option is implemented as dockerd does or refused by name — never stored and
/// ignored — while the zero values every client sends for the fields it knows still create ordinary containers.
/// </summary>
public class CreateOptionsSpec(RunningFlotilla flotilla) : IClassFixture<RunningFlotilla>, IAsyncLifetime
{
    private const string Image = "optbox:1";

    public async Task InitializeAsync()
    {
        if ((await flotilla.RunDockerAsync("image", "inspect", Image)).ExitCode == 0) return;
        var path = Path.Combine(flotilla.DataRoot, "busybox-rootfs.tar");
        await File.WriteAllBytesAsync(path, BusyboxImage.Rootfs());
        var result = await flotilla.RunDockerAsync("import", "-c", "CMD [\"/bin/sh\"]", path, Image);
        Assert.True(result.ExitCode == 0, result.ToString());
    }

    public Task DisposeAsync() => Task.CompletedTask;

    private async Task<int> CreatedEventsAsync()
    {
        await using var store = flotilla.OpenStore();
        await using var session = store.QuerySession();
        return await session.Events.QueryAllRawEvents().Where(e => e.EventTypeName == "container_created").CountAsync();
    }

    /// <summary>Options found ignored before (SECURITY.md "Not yet"), each as the docker CLI sends it, and the name the refusal must carry.</summary>
    public static IEnumerable<object[]> CliRefusals() =>
    [
        [new[] { "-p", "8080:80" }, "HostConfig.PortBindings (-p/--publish)"],
        [new[] { "-P" }, "HostConfig.PublishAllPorts (-P/--publish-all)"],
        [new[] { "--link", "other:alias" }, "HostConfig.Links (--link)"],
        [new[] { "--sysctl", "net.ipv4.ip_forward=1" }, "HostConfig.Sysctls (--sysctl)"],
        [new[] { "--device-cgroup-rule", "c 10:200 rwm" }, "HostConfig.DeviceCgroupRules (--device-cgroup-rule)"],
        [new[] { "--group-add", "10" }, "HostConfig.GroupAdd (--group-add)"],
        [new[] { "--pid", "host" }, "HostConfig.PidMode (--pid)"],
        [new[] { "--ipc", "host" }, "HostConfig.IpcMode (--ipc)"],
        [new[] { "--uts", "host" }, "HostConfig.UTSMode (--uts)"],
        [new[] { "--cgroup-parent", "/x" }, "HostConfig.CgroupParent (--cgroup-parent)"],
        [new[] { "--cpuset-cpus", "0" }, "HostConfig.CpusetCpus (--cpuset-cpus)"],
        [new[] { "--cpu-quota", "50000" }, "HostConfig.CpuQuota (--cpu-quota)"],
        [new[] { "--memory-reservation", "10m" }, "HostConfig.MemoryReservation (--memory-reservation)"],
        [new[] { "--memory-swappiness", "10" }, "HostConfig.MemorySwappiness (--memory-swappiness)"],
        [new[] { "--oom-kill-disable" }, "HostConfig.OomKillDisable (--oom-kill-disable)"],
        [new[] { "--oom-score-adj", "100" }, "HostConfig.OomScoreAdj (--oom-score-adj)"],
        [new[] { "--blkio-weight", "100" }, "HostConfig.BlkioWeight (--blkio-weight)"],
        [new[] { "--runtime", "crun" }, "HostConfig.Runtime (--runtime)"],
        [new[] { "--storage-opt", "size=1G" }, "HostConfig.StorageOpt (--storage-opt)"],
        [new[] { "--volumes-from", "other" }, "HostConfig.VolumesFrom (--volumes-from)"],
        [new[] { "--security-opt", "seccomp=unconfined" }, "HostConfig.SecurityOpt \"seccomp=unconfined\""],
        [new[] { "--security-opt", "systempaths=unconfined" }, "HostConfig.MaskedPaths"],
        [new[] { "--domainname", "example.test" }, "Domainname (--domainname)"],
        [new[] { "--add-host", "gw:host-gateway" }, "host-gateway"],
        [new[] { "--mount", "type=bind,src=/tmp,dst=/b,bind-nonrecursive" }, "HostConfig.Mounts[0].BindOptions.NonRecursive"],
        [new[] { "--mount", "type=volume,src=v,dst=/v,volume-driver=foo" }, "HostConfig.Mounts[0].VolumeOptions.DriverConfig"],
    ];

    [Theory]
    [MemberData(nameof(CliRefusals))]
    public async Task The_docker_cli_is_refused_by_name_and_nothing_is_created(string[] options, string named)
    {
        var before = await CreatedEventsAsync();
        var result = await flotilla.RunDockerAsync(["create", .. options, Image, "true"]);
        Assert.True(result.ExitCode != 0, result.ToString());
        Assert.Contains(named, result.Stderr);
        Assert.Contains("Flotilla", result.Stderr);
        Assert.Equal(before, await CreatedEventsAsync());
    }

    /// <summary>Fields as a client could send them that no CLI flag produces: unknown ones, endpoint settings, other networks.</summary>
    [Theory]
    [InlineData("\"HostConfig\":{\"FutureOption\":true}", "HostConfig.FutureOption is not a create option Flotilla knows")]
    [InlineData("\"FutureTopLevel\":{\"a\":1}", "FutureTopLevel is not a create option Flotilla knows")]
    [InlineData("\"MacAddress\":\"02:42:ac:11:00:02\"", "MacAddress (--mac-address)")]
    [InlineData("\"HostConfig\":{\"KernelMemoryTCP\":1048576}", "HostConfig.KernelMemoryTCP")]
    [InlineData("\"NetworkingConfig\":{\"EndpointsConfig\":{\"default\":{\"Aliases\":[\"web\"]}}}", "NetworkingConfig.EndpointsConfig.default.Aliases (--network-alias)")]
    [InlineData("\"NetworkingConfig\":{\"EndpointsConfig\":{\"default\":{\"IPAMConfig\":{\"IPv4Address\":\"10.0.0.5\"}}}}", "NetworkingConfig.EndpointsConfig.default.IPAMConfig")]
    [InlineData("\"HostConfig\":{\"NetworkMode\":\"none\"},\"NetworkingConfig\":{\"EndpointsConfig\":{\"other\":{}}}", "NetworkingConfig.EndpointsConfig.other")]
    [InlineData("\"HostConfig\":{\"Mounts\":[{\"Type\":\"npipe\",\"Source\":\"x\",\"Target\":\"/x\"}]}", "HostConfig.Mounts[0].Type \\\"npipe\\\"")]
    [InlineData("\"HostConfig\":{\"Tmpfs\":{\"/t\":\"size=1m,nosymfollow\"}}", "invalid tmpfs option \\\"nosymfollow\\\"")]
    [InlineData("\"HostConfig\":{\"Ulimits\":[{\"Name\":\"nofile\",\"Soft\":200,\"Hard\":100}]}", "ulimit soft limit must be less than or equal to hard limit: 200 > 100")]
    [InlineData("\"HostConfig\":{\"Dns\":[\"1.2.3.4\\nnameserver 6.6.6.6\"]}", "is not an ip address")]
    [InlineData("\"HostConfig\":{\"DnsOptions\":[\"ndots:1\\nnameserver 6.6.6.6\"]}", "is not a valid resolv.conf option")]
    [InlineData("\"HostConfig\":{\"ExtraHosts\":[\"evil\\n1.2.3.4 bank.test:1.2.3.4\"]}", "invalid IP address in add-host")]
    public async Task An_api_client_is_refused_by_name(string fields, string named)
    {
        var before = await CreatedEventsAsync();
        using var response = await flotilla.Docker.PostAsync("v1.51/containers/create",
            new StringContent("{\"Image\":\"" + Image + "\",\"Cmd\":[\"true\"]," + fields + "}", Encoding.UTF8, "application/json"));
        var body = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains(named, JsonDocument.Parse(body).RootElement.GetProperty("message").GetRawText());
        Assert.Equal(before, await CreatedEventsAsync());
    }

    [Fact]
    public async Task Default_creates_of_the_docker_cli_docker_dotnet_and_docker_py_pass()
    {
        var cli = await flotilla.RunDockerAsync("run", "--rm", Image, "echo", "cli");
        Assert.True(cli.ExitCode == 0 && cli.Stdout == "cli\n", cli.ToString());
        var named = await flotilla.RunDockerAsync("create", "--network", "none", "-it", "--name", "opt-cli-default", Image);
        Assert.True(named.ExitCode == 0, named.ToString());
        Assert.Equal(0, (await flotilla.RunDockerAsync("rm", "opt-cli-default")).ExitCode);

        using var dotnet = new DockerClientConfiguration(new Uri($"tcp://127.0.0.1:{flotilla.DockerPort}")).CreateClient();
        var created = await dotnet.Containers.CreateContainerAsync(new CreateContainerParameters
        {
            Image = Image,
            Cmd = ["true"],
            HostConfig = new HostConfig(),
            NetworkingConfig = new NetworkingConfig { EndpointsConfig = new Dictionary<string, EndpointSettings>() },
        });
        await dotnet.Containers.RemoveContainerAsync(created.ID, new ContainerRemoveParameters());

        // docker-py (Debian's python3-docker): create() and containers.create() send None for everything not given.
        var script = $"""
            import docker
            c = docker.DockerClient(base_url="tcp://127.0.0.1:{flotilla.DockerPort}")
            x = c.containers.create("{Image}", "true", detach=True)
            x.remove()
            low = c.api.create_container("{Image}", "true", host_config=c.api.create_host_config())
            c.api.remove_container(low["Id"])
            print("ok")
            """;
        var py = await ProcessRunner.RunAsync("python3", ["-c", script], TimeSpan.FromSeconds(60));
        Assert.True(py.ExitCode == 0 && py.Stdout.Trim() == "ok", py.ToString());
    }

    [Fact]
    public async Task Mounts_and_tmpfs_are_mounted_with_the_asked_flags()
    {
        var source = Path.Combine(flotilla.DataRoot, "mount-src");
        Directory.CreateDirectory(source);
        await File.WriteAllTextAsync(Path.Combine(source, "hello"), "from the host");
        var result = await flotilla.RunDockerAsync("run", "--rm",
            "--mount", $"type=bind,src={source},dst=/b,readonly",
            "--mount", "type=volume,src=optvol,dst=/v",
            "--mount", "type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1770",
            "--tmpfs", "/run:size=2m,exec",
            "--shm-size", "8m",
            Image, "sh", "-c", "cat /b/hello; echo; cat /proc/mounts; touch /b/x 2>/dev/null && echo WRITABLE; echo data > /v/f && echo volume-ok");
        Assert.True(result.ExitCode == 0, result.ToString());
        var lines = result.Stdout.Split('\n');
        Assert.Equal("from the host", lines[0]);
        string Mount(string target) => lines.Single(l => l.Split(' ') is [_, var t, ..] && t == target);
        Assert.Contains(" ro,", Mount("/b") + ",");
        Assert.StartsWith("tmpfs /t tmpfs rw,nosuid,nodev,noexec,", Mount("/t"));
        Assert.Contains("size=1024k", Mount("/t"));
        Assert.Contains("mode=1770", Mount("/t"));
        Assert.StartsWith("tmpfs /run tmpfs rw,nosuid,nodev,", Mount("/run"));
        Assert.DoesNotContain("noexec", Mount("/run"));
        Assert.Contains("size=2048k", Mount("/run"));
        Assert.Contains("size=8192k", Mount("/dev/shm"));
        Assert.DoesNotContain("WRITABLE", result.Stdout);
        Assert.Contains("volume-ok", result.Stdout);
        Assert.Contains("optvol", (await flotilla.RunDockerAsync("volume", "ls", "-q")).Stdout);
    }

    [Fact]
    public async Task Ulimits_dns_and_extra_hosts_apply_inside_the_container()
    {
        var result = await flotilla.RunDockerAsync("run", "--rm", "--ulimit", "nofile=100:200",
            "--dns", "192.0.2.53", "--dns-search", "example.test", "--dns-option", "ndots:2", "--add-host", "db.test:192.0.2.7",
            Image, "sh", "-c", "ulimit -n; ulimit -Hn; cat /etc/resolv.conf; cat /etc/hosts");
        Assert.True(result.ExitCode == 0, result.ToString());
        var lines = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("100", lines[0]);
        Assert.Equal("200", lines[1]);
        Assert.Equal(["nameserver 192.0.2.53"], lines.Where(l => l.StartsWith("nameserver", StringComparison.Ordinal)));
        Assert.Contains("search example.test", lines);
        Assert.Contains("options ndots:2", lines);
        Assert.Contains("192.0.2.7\tdb.test", lines);
    }

    [Fact]
    public async Task Init_runs_tini_as_pid_1_and_a_shell_stops_at_once()
    {
        var run = await flotilla.RunDockerAsync("run", "-d", "--name", "opt-init", "--init", Image, "sh", "-c", "while true; do sleep 1; done");
        Assert.True(run.ExitCode == 0, run.ToString());
        var cmdline = await flotilla.RunDockerAsync("exec", "opt-init", "cat", "/proc/1/cmdline");
        Assert.True(cmdline.ExitCode == 0, cmdline.ToString());
        Assert.StartsWith("/sbin/docker-init\0--\0sh\0", cmdline.Stdout);
        var watch = Stopwatch.StartNew();
        var stop = await flotilla.RunDockerAsync("stop", "opt-init");
        watch.Stop();
        Assert.True(stop.ExitCode == 0, stop.ToString());
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(1), $"docker stop took {watch.Elapsed}");
        Assert.Equal(0, (await flotilla.RunDockerAsync("rm", "opt-init")).ExitCode);
    }

    [Fact]
    public async Task A_device_is_made_in_the_container_and_allowed_by_its_cgroup()
    {
        // /dev/net/tun (c 10:200) is not among the devices every container may use.
        var result = await flotilla.RunDockerAsync("run", "--rm", "--device", "/dev/net/tun:/dev/mytun:rw", Image, "sh", "-c",
            "ls -l /dev/mytun; exec 3<>/dev/mytun && echo opened");
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Matches(@"^crw-------\s+1 root\s+root\s+10,\s+200 ", result.Stdout);
        Assert.Contains("opened", result.Stdout);
        // create + start: `run --rm` of a container that fails to start waits forever (issue 16 item 2, another branch).
        var created = await flotilla.RunDockerAsync("create", "--name", "opt-nodev", "--device", "/dev/does-not-exist", Image, "true");
        Assert.True(created.ExitCode == 0, created.ToString());
        var missing = await flotilla.RunDockerAsync("start", "opt-nodev");
        Assert.NotEqual(0, missing.ExitCode);
        Assert.Contains("error gathering device information while adding custom device \"/dev/does-not-exist\"", missing.Stderr);
        Assert.Equal(0, (await flotilla.RunDockerAsync("rm", "opt-nodev")).ExitCode);
    }

    [Fact]
    public async Task An_exec_option_flotilla_does_not_know_is_refused_by_name()
    {
        var run = await flotilla.RunDockerAsync("run", "-d", "--name", "opt-exec", Image, "sleep", "60");
        Assert.True(run.ExitCode == 0, run.ToString());
        try
        {
            using var refused = await flotilla.Docker.PostAsync("v1.51/containers/opt-exec/exec",
                new StringContent("{\"Cmd\":[\"true\"],\"FutureOption\":\"x\"}", Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
            Assert.Contains("FutureOption", await refused.Content.ReadAsStringAsync());
            var exec = await flotilla.RunDockerAsync("exec", "opt-exec", "echo", "ok");
            Assert.True(exec.ExitCode == 0 && exec.Stdout == "ok\n", exec.ToString());
        }
        finally
        {
            await flotilla.RunDockerAsync("rm", "-f", "opt-exec");
        }
    }

    [Fact]
    public async Task Inspect_shows_the_implemented_options_as_dockerd_does()
    {
        var source = Path.Combine(flotilla.DataRoot, "inspect-src");
        Directory.CreateDirectory(source);
        var create = await flotilla.RunDockerAsync("create", "--name", "opt-inspect", "--init", "--shm-size", "8m", "--ulimit", "nofile=100:200",
            "--dns", "192.0.2.53", "--dns-search", "example.test", "--dns-option", "ndots:2", "--add-host", "db.test:192.0.2.7",
            "--tmpfs", "/run:size=2m", "--mount", $"type=bind,src={source},dst=/b,readonly,bind-propagation=rslave",
            "--device", "/dev/net/tun:/dev/mytun:r", Image, "true");
        Assert.True(create.ExitCode == 0, create.ToString());
        var inspect = await flotilla.RunDockerAsync("inspect", "opt-inspect");
        var host = JsonDocument.Parse(inspect.Stdout).RootElement[0].GetProperty("HostConfig");
        Assert.True(host.GetProperty("Init").GetBoolean());
        Assert.Equal(8L << 20, host.GetProperty("ShmSize").GetInt64());
        var ulimit = host.GetProperty("Ulimits")[0];
        Assert.Equal(("nofile", 100, 200), (ulimit.GetProperty("Name").GetString(), ulimit.GetProperty("Soft").GetInt64(), ulimit.GetProperty("Hard").GetInt64()));
        Assert.Equal(["192.0.2.53"], host.GetProperty("Dns").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(["example.test"], host.GetProperty("DnsSearch").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(["ndots:2"], host.GetProperty("DnsOptions").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(["db.test:192.0.2.7"], host.GetProperty("ExtraHosts").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal("size=2m", host.GetProperty("Tmpfs").GetProperty("/run").GetString());
        var device = host.GetProperty("Devices")[0];
        Assert.Equal(("/dev/net/tun", "/dev/mytun", "r"), (device.GetProperty("PathOnHost").GetString(), device.GetProperty("PathInContainer").GetString(),
            device.GetProperty("CgroupPermissions").GetString()));
        var mount = host.GetProperty("Mounts")[0];
        Assert.Equal("bind", mount.GetProperty("Type").GetString());
        Assert.Equal("/b", mount.GetProperty("Target").GetString());
        Assert.True(mount.GetProperty("ReadOnly").GetBoolean());
        Assert.Equal("rslave", mount.GetProperty("BindOptions").GetProperty("Propagation").GetString());
        var point = JsonDocument.Parse(inspect.Stdout).RootElement[0].GetProperty("Mounts").EnumerateArray().Single(m => m.GetProperty("Destination").GetString() == "/b");
        Assert.Equal("rslave", point.GetProperty("Propagation").GetString());

        var plain = await flotilla.RunDockerAsync("create", "--name", "opt-plain", Image, "true");
        Assert.True(plain.ExitCode == 0, plain.ToString());
        var plainHost = JsonDocument.Parse((await flotilla.RunDockerAsync("inspect", "opt-plain")).Stdout).RootElement[0].GetProperty("HostConfig");
        Assert.Equal(64L << 20, plainHost.GetProperty("ShmSize").GetInt64());
        Assert.False(plainHost.TryGetProperty("Init", out _));
        Assert.Equal(0, (await flotilla.RunDockerAsync("rm", "opt-inspect", "opt-plain")).ExitCode);
    }
}
