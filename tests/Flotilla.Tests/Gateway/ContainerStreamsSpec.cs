using System.Text;
using System.Text.Json;
using Docker.DotNet;
using Docker.DotNet.Models;
using Flotilla.Tests.Support;
using Marten;
using Xunit;

namespace Flotilla.Tests.Gateway;

/// <summary>
/// attach, exec, resize, top, stats, export, commit and cp through the real docker CLI (and Docker.DotNet for the
/// hijacked streams) against the all-in-one host with real runc containers; interactive TTYs driven through tmux.
/// </summary>
public class ContainerStreamsSpec(RunningFlotilla flotilla) : IClassFixture<RunningFlotilla>, IAsyncLifetime
{
    private const string Image = "streambox:1";

    public async Task InitializeAsync()
    {
        if ((await flotilla.RunDockerAsync("image", "inspect", Image)).ExitCode == 0) return;
        Directory.CreateDirectory(flotilla.DataRoot);
        var path = Path.Combine(flotilla.DataRoot, "streambox-rootfs.tar");
        await File.WriteAllBytesAsync(path, BusyboxImage.Rootfs());
        await DockerOk("import", "-c", "CMD [\"/bin/sh\"]", path, Image);
    }

    public Task DisposeAsync() => Task.CompletedTask;

    private Dictionary<string, string> Env => new()
    {
        ["DOCKER_HOST"] = $"tcp://127.0.0.1:{flotilla.DockerPort}",
        ["DOCKER_CONFIG"] = Path.Combine(flotilla.DataRoot, "docker-config"),
    };

    private async Task<string> DockerOk(params string[] args)
    {
        var result = await flotilla.RunDockerAsync(args);
        Assert.True(result.ExitCode == 0, $"docker {string.Join(' ', args)}: {result}");
        return result.Stdout;
    }

    /// <summary>A shell line with the docker CLI pointed at the host (pipes for stdin).</summary>
    private Task<ProcessResult> Sh(string script) => ProcessRunner.RunAsync("/bin/sh", ["-c", script], TimeSpan.FromSeconds(60), Env);

    private async Task<string> RunningContainer(string name)
    {
        var id = (await DockerOk("run", "-d", "--name", name, Image, "sleep", "600")).Trim();
        return id;
    }

    private DockerClient Client() => new DockerClientConfiguration(new Uri($"tcp://127.0.0.1:{flotilla.DockerPort}")).CreateClient();

    [Theory]
    [InlineData("127", "no such file or directory", new[] { "/nonexistent" })]
    [InlineData("125", "unable to find user nosuchuser: no matching entries in passwd file", new[] { "--user", "nosuchuser", "true" })]
    public async Task Docker_run_rm_of_a_container_that_cannot_start_prints_the_error_exits_at_once_and_leaves_nothing(string exitCode, string message, string[] args)
    {
        var name = "rm-start-fails-" + exitCode;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        // As the CLI runs it in a terminal: attached to stdout and stderr, waiting for the removal.
        var result = await ProcessRunner.RunAsync(RunningFlotilla.DockerCli,
            ["-H", $"tcp://127.0.0.1:{flotilla.DockerPort}", "run", "--rm", "--name", name, .. args.Length > 1 ? args[..^1] : [], Image, args[^1]],
            TimeSpan.FromSeconds(20), Env);
        clock.Stop();
        Assert.True(result.ExitCode.ToString() == exitCode, $"exit {result.ExitCode} after {clock.ElapsedMilliseconds} ms: {result}");
        Assert.Contains(message, result.Stderr);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"took {clock.ElapsedMilliseconds} ms");
        Assert.Equal("", (await DockerOk("ps", "-aq", "--filter", $"name={name}")).Trim());
    }

    [Fact]
    public async Task Docker_run_on_a_network_that_does_not_exist_says_so_and_pulls_nothing()
    {
        var result = await flotilla.RunDockerAsync("run", "--name", "on-missing-net", "--network", "nosuchnet", Image, "true");
        Assert.Equal(125, result.ExitCode);
        Assert.Contains("network nosuchnet not found", result.Stderr);
        Assert.DoesNotContain("Unable to find image", result.Stderr);
        // As dockerd: the create succeeded, the start failed.
        Assert.Contains("Created", await DockerOk("ps", "-a", "--filter", "name=on-missing-net", "--format", "{{.Status}}"));
        await DockerOk("rm", "on-missing-net");
    }

    [Fact]
    public async Task Docker_diff_lists_the_containers_changes_not_the_runtimes_mount_points()
    {
        await RunningContainer("differ");
        await DockerOk("exec", "differ", "touch", "/tmp/made-here");
        var lines = (await DockerOk("diff", "differ")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["C /tmp", "A /tmp/made-here"], lines);
        await DockerOk("rm", "-f", "differ");
    }

    [Fact]
    public async Task Events_are_one_chunk_each_with_their_newline()
    {
        var since = DateTimeOffset.UtcNow.AddSeconds(-1).ToUnixTimeSeconds();
        await DockerOk("create", "--name", "chunky", Image, "true");
        await DockerOk("rm", "chunky");
        var until = DateTimeOffset.UtcNow.AddSeconds(1).ToUnixTimeSeconds();
        await Task.Delay(1100);
        using var client = new System.Net.Sockets.TcpClient();
        await client.ConnectAsync("127.0.0.1", flotilla.DockerPort);
        var stream = client.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"GET /v1.51/events?since={since}&until={until} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"));
        using var all = new MemoryStream();
        await stream.CopyToAsync(all, new CancellationTokenSource(TimeSpan.FromSeconds(20)).Token);
        var text = Encoding.UTF8.GetString(all.ToArray());
        var body = text[(text.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..];
        Assert.Contains("Transfer-Encoding: chunked", text);
        var chunks = new List<string>();
        while (true)
        {
            var lineEnd = body.IndexOf("\r\n", StringComparison.Ordinal);
            var size = Convert.ToInt32(body[..lineEnd], 16);
            if (size == 0) break;
            chunks.Add(body.Substring(lineEnd + 2, size));
            body = body[(lineEnd + 2 + size + 2)..];
        }
        Assert.True(chunks.Count >= 2, text);
        foreach (var chunk in chunks)
        {
            Assert.EndsWith("\n", chunk);
            Assert.Equal(JsonValueKind.Object, JsonDocument.Parse(chunk).RootElement.ValueKind);
        }
    }

    [Fact]
    public async Task Docker_run_prints_the_output_of_a_fast_echo_every_time()
    {
        for (var i = 0; i < 20; i++)
        {
            var result = await flotilla.RunDockerAsync("run", "--rm", Image, "echo", "hi");
            Assert.True(result.ExitCode == 0, $"run {i}: {result}");
            Assert.Equal("hi\n", result.Stdout);
        }
    }

    [Fact]
    public async Task Docker_run_separates_stdout_and_stderr_and_returns_the_exit_code()
    {
        var result = await flotilla.RunDockerAsync("run", "--rm", Image, "sh", "-c", "echo out; echo err >&2; exit 5");
        Assert.Equal(5, result.ExitCode);
        Assert.Equal("out\n", result.Stdout);
        Assert.Equal("err\n", result.Stderr);
    }

    [Fact]
    public async Task Docker_run_i_pipes_stdin_and_start_a_attaches()
    {
        var piped = await Sh("printf 'one\\ntwo\\n' | docker run -i --rm " + Image + " cat");
        Assert.True(piped.ExitCode == 0, piped.ToString());
        Assert.Equal("one\ntwo\n", piped.Stdout);

        await DockerOk("create", "--name", "starta", Image, "sh", "-c", "echo started; exit 4");
        var started = await flotilla.RunDockerAsync("start", "-a", "starta");
        Assert.Equal(4, started.ExitCode);
        Assert.Equal("started\n", started.Stdout);
    }

    [Fact]
    public async Task Docker_exec_runs_with_user_workdir_env_stdin_and_exit_codes()
    {
        await RunningContainer("execs");
        Assert.Contains("bin", await DockerOk("exec", "execs", "ls", "/"));
        Assert.Equal("65534\n", await DockerOk("exec", "-u", "nobody", "execs", "id", "-u"));
        Assert.Equal("/tmp\n", await DockerOk("exec", "-w", "/tmp", "execs", "pwd"));
        Assert.Contains("A=1\n", await DockerOk("exec", "-e", "A=1", "execs", "env"));
        var stdin = await Sh("echo abc | docker exec -i execs cat");
        Assert.Equal("abc\n", stdin.Stdout);
        Assert.Equal(3, (await flotilla.RunDockerAsync("exec", "execs", "sh", "-c", "exit 3")).ExitCode);
        Assert.Equal(127, (await flotilla.RunDockerAsync("exec", "execs", "no-such-command")).ExitCode);

        await DockerOk("exec", "-d", "execs", "sh", "-c", "echo detached > /tmp/d");
        Assert.True(await Eventually.TrueAsync(async () => (await flotilla.RunDockerAsync("exec", "execs", "cat", "/tmp/d")).Stdout == "detached\n",
            TimeSpan.FromSeconds(10)));
        await DockerOk("rm", "-f", "execs");
    }

    [Fact]
    public async Task Exec_and_attach_through_docker_dotnet()
    {
        var id = await RunningContainer("dotnet-exec");
        using var client = Client();
        var exec = await client.Exec.ExecCreateContainerAsync(id, new ContainerExecCreateParameters
        {
            Cmd = ["sh", "-c", "echo to-out; echo to-err >&2; exit 2"],
            AttachStdout = true,
            AttachStderr = true,
        });
        using (var stream = await client.Exec.StartAndAttachContainerExecAsync(exec.ID, false))
        {
            var (stdout, stderr) = await stream.ReadOutputToEndAsync(CancellationToken.None);
            Assert.Equal("to-out\n", stdout);
            Assert.Equal("to-err\n", stderr);
        }
        var inspect = await client.Exec.InspectContainerExecAsync(exec.ID);
        Assert.False(inspect.Running);
        Assert.Equal(2, inspect.ExitCode);
        Assert.Equal(id, inspect.ContainerID);

        await DockerOk("create", "--name", "dotnet-attach", Image, "sh", "-c", "echo attached-out; echo attached-err >&2");
        using (var attach = await client.Containers.AttachContainerAsync("dotnet-attach", false,
                   new ContainerAttachParameters { Stream = true, Stdout = true, Stderr = true }))
        {
            await client.Containers.StartContainerAsync("dotnet-attach", new ContainerStartParameters());
            var (stdout, stderr) = await attach.ReadOutputToEndAsync(CancellationToken.None);
            Assert.Equal("attached-out\n", stdout);
            Assert.Equal("attached-err\n", stderr);
        }
        await DockerOk("rm", "-f", "dotnet-exec", "dotnet-attach");
    }

    [Fact]
    public async Task Top_stats_and_resize()
    {
        await RunningContainer("tops");
        var top = await DockerOk("top", "tops");
        Assert.Contains("PID", top);
        Assert.Contains("sleep 600", top);

        var stats = await DockerOk("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}} {{.MemUsage}}", "tops");
        Assert.Matches(@"^tops 1 \d", stats);

        using var json = await flotilla.Docker.GetAsync("containers/tops/stats?stream=0&one-shot=1");
        var body = JsonDocument.Parse(await json.Content.ReadAsStringAsync()).RootElement;
        Assert.True(body.GetProperty("cpu_stats").GetProperty("cpu_usage").GetProperty("total_usage").GetInt64() > 0);
        Assert.True(body.GetProperty("memory_stats").GetProperty("usage").GetInt64() > 0);
        Assert.Equal("/tops", body.GetProperty("name").GetString());

        var notTty = await flotilla.Docker.PostAsync("containers/tops/resize?h=30&w=100", null);
        Assert.True((int)notTty.StatusCode is 200 or 409, notTty.StatusCode.ToString());
        await DockerOk("rm", "-f", "tops");
    }

    [Fact]
    public async Task Export_commit_and_cp()
    {
        await RunningContainer("files");
        await DockerOk("exec", "files", "sh", "-c", "echo made-in-c > /made.txt");

        var tar = Path.Combine(flotilla.DataRoot, "files-export.tar");
        await DockerOk("export", "-o", tar, "files");
        var names = await ProcessRunner.RunAsync("tar", ["tf", tar]);
        Assert.Contains("made.txt", names.Stdout);
        Assert.Contains("bin/busybox", names.Stdout);

        var id = (await DockerOk("commit", "files", "committed:1")).Trim();
        Assert.StartsWith("sha256:", id);
        // A running container is paused while its layer is read, then resumed; the commit is an event.
        await using (var store = flotilla.OpenStore())
        await using (var session = store.QuerySession())
        {
            var containerId = JsonDocument.Parse(await DockerOk("inspect", "files")).RootElement[0].GetProperty("Id").GetString();
            var types = (await session.Events.FetchStreamAsync("container-" + containerId)).Select(e => e.EventTypeName).ToList();
            Assert.Equal(["container_paused", "container_unpaused", "container_committed"], types.TakeLast(3));
        }
        Assert.Equal("running", JsonDocument.Parse(await DockerOk("inspect", "files")).RootElement[0].GetProperty("State").GetProperty("Status").GetString());
        Assert.Equal("made-in-c\n", await DockerOk("run", "--rm", "committed:1", "cat", "/made.txt"));

        var local = Path.Combine(flotilla.DataRoot, "cp-out");
        await DockerOk("cp", "files:/etc/passwd", local);
        Assert.Contains("nobody", await File.ReadAllTextAsync(local));

        var upload = Path.Combine(flotilla.DataRoot, "upload.txt");
        await File.WriteAllTextAsync(upload, "uploaded\n");
        await DockerOk("cp", upload, "files:/tmp/");
        Assert.Equal("uploaded\n", await DockerOk("exec", "files", "cat", "/tmp/upload.txt"));

        // A symlink in the container pointing out of the rootfs is not followed on the way in.
        await DockerOk("exec", "files", "sh", "-c", "ln -s / /tmp/escape");
        var escape = await flotilla.RunDockerAsync("cp", upload, "files:/tmp/escape/");
        Assert.False(File.Exists("/upload.txt") && File.ReadAllText("/upload.txt") == "uploaded\n", "wrote outside the rootfs");
        _ = escape;
        await DockerOk("rm", "-f", "files");
    }

    [Fact]
    public async Task Interactive_tty_run_and_exec_through_tmux()
    {
        if (!File.Exists("/usr/bin/tmux")) return;
        await RunningContainer("ttys");
        var docker = $"DOCKER_HOST={Env["DOCKER_HOST"]} DOCKER_CONFIG={Env["DOCKER_CONFIG"]} docker";
        foreach (var (session, command) in new[] { ("fl-exec-it", $"{docker} exec -it ttys sh"), ("fl-run-it", $"{docker} run -it --rm {Image} sh") })
        {
            await Tmux(session, ["new-session", "-d", "-s", session, "-x", "100", "-y", "25", command + "; echo EXIT=$?; sleep 120"]);
            try
            {
                Assert.True(await Eventually.TrueAsync(async () => (await Capture(session)).Contains("/ #"), TimeSpan.FromSeconds(45)), await Diagnose(session));
                await Tmux(session, ["send-keys", "-t", session, "echo hi-$((1+1)); stty size", "Enter"]);
                Assert.True(await Eventually.TrueAsync(async () => (await Capture(session)).Contains("hi-2"), TimeSpan.FromSeconds(30)), await Capture(session));
                Assert.True(await Eventually.TrueAsync(async () => (await Capture(session)).Contains("25 100"), TimeSpan.FromSeconds(30)), await Capture(session));
                await Tmux(session, ["send-keys", "-t", session, "exit 7", "Enter"]);
                Assert.True(await Eventually.TrueAsync(async () => (await Capture(session)).Contains("EXIT=7"), TimeSpan.FromSeconds(30)), await Capture(session));
            }
            finally
            {
                await KillTmuxAsync(session);
            }
        }
        await DockerOk("rm", "-f", "ttys");
    }

    [Fact]
    public async Task Ctrl_p_ctrl_q_detaches_run_it_and_attach_through_the_unix_socket_and_the_container_runs_on()
    {
        if (!File.Exists("/usr/bin/tmux")) return;
        var docker = $"DOCKER_HOST=unix://{flotilla.DockerSocket} DOCKER_CONFIG={Env["DOCKER_CONFIG"]} docker";
        var sessions = new[] { ("fl-detach-run", $"{docker} run -it --name detaching {Image} sh"), ("fl-detach-attach", $"{docker} attach detaching") };
        try
        {
            foreach (var (session, command) in sessions)
            {
                await Tmux(session, ["new-session", "-d", "-s", session, "-x", "100", "-y", "25", command + "; echo EXIT=$?; sleep 120"]);
                // Keys typed before the CLI holds the terminal in raw mode can be lost: type until the shell answers.
                Assert.True(await Eventually.TrueAsync(async () =>
                {
                    await Tmux(session, ["send-keys", "-t", session, "echo up-$((40+2))", "Enter"]);
                    await Task.Delay(500);
                    return (await Capture(session)).Contains("up-42");
                }, TimeSpan.FromSeconds(45)), await Diagnose(session));
                await Tmux(session, ["send-keys", "-t", session, "C-p", "C-q"]);
                // `docker run` returns 0 quietly; `docker attach` says "read escape sequence" (and exits 1), as against dockerd.
                var detached = session == "fl-detach-run" ? "EXIT=0" : "read escape sequence";
                Assert.True(await Eventually.TrueAsync(async () => (await Capture(session)).Contains("EXIT="), TimeSpan.FromSeconds(30)), await Capture(session));
                Assert.Contains(detached, await Capture(session));
                var state = await flotilla.RunDockerAsync("inspect", "-f", "{{.State.Running}}", "detaching");
                Assert.Equal("true", state.Stdout.Trim());
                await KillTmuxAsync(session);
            }
        }
        finally
        {
            foreach (var (session, _) in sessions) await KillTmuxAsync(session);
            await flotilla.RunDockerAsync("rm", "-f", "detaching");
        }
    }

    /// <summary>
    /// tmux with a server of the session's own (<c>-L</c>): with the default server shared, killing one test's last
    /// session made that server exit while the next test's new session was being created in it, and the new session
    /// (with the docker CLI in it) died with it: a blank pane for 45 s while the container it had started ran on.
    /// </summary>
    private static Task<ProcessResult> Tmux(string session, string[] args) => ProcessRunner.RunAsync("tmux", ["-L", "flotilla-" + session, .. args]);

    /// <summary>Stops the session's server and removes its socket (tmux leaves it in its directory).</summary>
    private static async Task KillTmuxAsync(string session)
    {
        await Tmux(session, ["kill-server"]);
        var uid = File.ReadLines("/proc/self/status").First(l => l.StartsWith("Uid:", StringComparison.Ordinal)).Split('\t', StringSplitOptions.RemoveEmptyEntries)[1];
        File.Delete(Path.Combine(Environment.GetEnvironmentVariable("TMUX_TMPDIR") ?? "/tmp", $"tmux-{uid}", "flotilla-" + session));
    }

    private static async Task<string> Capture(string session) =>
        (await Tmux(session, ["capture-pane", "-t", session, "-p"])).Stdout;

    /// <summary>
    /// The pane, and what the CLI in it and the engine were doing: these tests once showed a blank pane for 45 s in a
    /// loaded full run (not reproduced since), and the pane alone cannot tell a hung CLI from a hung engine.
    /// </summary>
    private async Task<string> Diagnose(string session)
    {
        var capture = await Tmux(session, ["capture-pane", "-t", session, "-p"]);
        var pane = capture.ExitCode == 0 ? capture.Stdout : $"(capture-pane: {capture})";
        var processes = await ProcessRunner.RunAsync("ps", ["-eo", "pid,ppid,stat,etime,wchan:20,args"]);
        var cli = string.Join('\n', processes.Stdout.Split('\n').Where(l => l.Contains("docker") || l.Contains("tmux") || l.Contains("runc")));
        var containers = await flotilla.RunDockerAsync("ps", "-a", "--format", "{{.ID}} {{.Names}} {{.Status}}");
        return $"pane:\n{pane}\nprocesses:\n{cli}\ndocker ps -a: {containers.Stdout}{containers.Stderr}\nload: {File.ReadAllText("/proc/loadavg")}";
    }
}
