using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using Flotilla.NodeRuntime.Oci;
using Xunit;
using Xunit.Abstractions;

namespace Flotilla.Tests.Oci;

[CollectionDefinition("oci-containers", DisableParallelization = true)]
public sealed class OciContainersCollection;

/// <summary>Real containers: busybox rootfs, runc, conmon. Runs as root.</summary>
[Collection("oci-containers")]
public sealed class ConmonMonitorSpec : IAsyncLifetime
{
    private readonly ITestOutputHelper _output;
    private readonly BusyboxRootfs _fs = new();
    private readonly List<string> _ids = [];
    private ConmonMonitor _monitor = null!;

    public ConmonMonitorSpec(ITestOutputHelper output) => _output = output;

    public Task InitializeAsync()
    {
        _monitor = NewMonitor();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        foreach (var id in _ids)
        {
            await _monitor.RemoveAsync(id);
            Assert.False(Directory.Exists(_monitor.PathsFor(id).Root));
            Assert.Null(await _monitor.Runtime.StateAsync(id));
            Assert.False(Directory.Exists($"/sys/fs/cgroup/memory/flotilla/{id}"));
        }
        _fs.Dispose();
    }

    private ConmonMonitor NewMonitor() =>
        new(new ConmonOptions { DataRoot = _fs.DataRoot }, new RuncDriver("/usr/sbin/runc", Path.Combine(_fs.DataRoot, "runc")));

    private ContainerSpec Spec(params string[] args)
    {
        var id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        _ids.Add(id);
        return new ContainerSpec { Id = id, RootfsPath = _fs.Rootfs, Args = args };
    }

    private async Task<(ContainerExit Exit, string Log)> RunToExit(ContainerSpec spec)
    {
        await _monitor.RunAsync(spec);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var exit = await _monitor.WaitForExitAsync(spec.Id, cts.Token);
        var log = await ReadLog(spec.Id);
        _output.WriteLine($"exit {exit.ExitCode}, log:\n{log}");
        return (exit, log);
    }

    private async Task<string> ReadLog(string id)
    {
        var sb = new StringBuilder();
        await foreach (var e in ContainerLogReader.ReadAsync(_monitor.PathsFor(id).Log, new LogReadOptions()))
            sb.Append(Encoding.UTF8.GetString(e.Bytes));
        return sb.ToString();
    }

    [Fact]
    public async Task Echo_hello_lands_in_the_log()
    {
        var (exit, log) = await RunToExit(Spec("echo", "hello"));
        Assert.Equal(0, exit.ExitCode);
        Assert.False(exit.OomKilled);
        Assert.Equal("hello\n", log);
    }

    [Fact]
    public async Task Exit_codes_are_the_process_exit_codes()
    {
        Assert.Equal(0, (await RunToExit(Spec("true"))).Exit.ExitCode);
        Assert.Equal(3, (await RunToExit(Spec("sh", "-c", "exit 3"))).Exit.ExitCode);

        var sleeper = Spec("sleep", "30");
        await _monitor.RunAsync(sleeper);
        await _monitor.KillAsync(sleeper.Id, "KILL");
        var killed = await _monitor.WaitForExitAsync(sleeper.Id, Timeout());
        Assert.Equal(137, killed.ExitCode);
        Assert.False(killed.OomKilled);
    }

    [Fact]
    public async Task A_process_that_cannot_start_is_a_create_error_and_leaves_nothing()
    {
        var spec = Spec("/no/such/binary");
        var error = await Assert.ThrowsAnyAsync<OciRuntimeException>(() => _monitor.RunAsync(spec));
        _output.WriteLine(error.Message);
        Assert.Equal(
            "runc create failed: unable to start container process: exec: \"/no/such/binary\": stat /no/such/binary: no such file or directory",
            error.RuntimeMessage);
        Assert.False(Directory.Exists(_monitor.PathsFor(spec.Id).Root));
    }

    [Fact]
    public async Task An_unknown_user_fails_like_docker_and_leaves_nothing()
    {
        var spec = Spec("id") with { User = "ghost" };
        var error = await Assert.ThrowsAsync<UnknownUserException>(() => _monitor.CreateAsync(spec));
        Assert.Equal("unable to find user ghost: no matching entries in passwd file", error.Message);
        Assert.False(Directory.Exists(_monitor.PathsFor(spec.Id).Root));
    }

    [Fact]
    public async Task Stop_sends_TERM_and_escalates_to_KILL_when_it_is_ignored()
    {
        // A shell that handles TERM exits promptly with its own code.
        var handler = Spec("sh", "-c", "trap 'exit 7' TERM; sleep 30 & wait");
        await _monitor.RunAsync(handler);
        await Task.Delay(300);
        var sw = Stopwatch.StartNew();
        var handled = await _monitor.StopAsync(handler.Id, TimeSpan.FromSeconds(10));
        Assert.Equal(7, handled.ExitCode);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"TERM took {sw.Elapsed}");

        // PID 1 without a handler ignores TERM: the stop times out and KILL ends it.
        var ignorer = Spec("sleep", "30");
        await _monitor.RunAsync(ignorer);
        sw.Restart();
        var killed = await _monitor.StopAsync(ignorer.Id, TimeSpan.FromSeconds(1));
        Assert.Equal(137, killed.ExitCode);
        Assert.InRange(sw.Elapsed, TimeSpan.FromSeconds(0.9), TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task A_container_whose_conmon_was_killed_is_not_exited_while_it_runs()
    {
        // Issue 15 item 10: the engine's record must never say a running process exited. Without its conmon nobody
        // records the exit, but the process runs on: the wait must not end until runc says it stopped.
        var spec = Spec("sleep", "300");
        var pid = await _monitor.RunAsync(spec);
        var wait = _monitor.WaitForExitAsync(spec.Id, Timeout());
        Process.GetProcessById(_monitor.ConmonPid(spec.Id)!.Value).Kill();
        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.False(wait.IsCompleted, wait.IsFaulted ? wait.Exception!.GetBaseException().Message : "completed");
        Assert.Equal("running", (await _monitor.Runtime.StateAsync(spec.Id))!.Status);

        Process.GetProcessById(pid).Kill();
        var lost = await Assert.ThrowsAnyAsync<InvalidOperationException>(() => wait);
        Assert.Contains("recorded no exit code", lost.Message);
    }

    [Fact]
    public async Task Stdin_goes_through_the_attach_socket_and_output_comes_back()
    {
        var spec = Spec("cat") with { OpenStdin = true, StdinOnce = true }; // as `docker run -i` creates it
        await _monitor.CreateAsync(spec);
        await using var attach = await _monitor.AttachAsync(spec.Id);
        await _monitor.StartAsync(spec.Id);
        await attach.WriteStdinAsync("ping\n"u8.ToArray());
        await attach.WriteStdinAsync("pong\n"u8.ToArray());
        attach.CloseStdin();
        var stdout = new StringBuilder();
        await foreach (var frame in attach.ReadAllAsync(Timeout()))
        {
            Assert.Equal(StdStream.Stdout, frame.Stream);
            stdout.Append(Encoding.UTF8.GetString(frame.Data.Span));
        }
        Assert.Equal("ping\npong\n", stdout.ToString());
        Assert.Equal(0, (await _monitor.WaitForExitAsync(spec.Id, Timeout())).ExitCode);
        Assert.Equal("ping\npong\n", await ReadLog(spec.Id));
    }

    [Fact]
    public async Task Stdin_stays_open_across_attaches_unless_stdin_once()
    {
        // Regression: conmon closed stdin when the first attached client went, so a detached `docker run -it` shell
        // (or a `docker run -d -i` container) could never take input again.
        var spec = Spec("cat") with { OpenStdin = true };
        await _monitor.CreateAsync(spec);
        await using (var first = await _monitor.AttachAsync(spec.Id))
        {
            await _monitor.StartAsync(spec.Id);
            await first.WriteStdinAsync("one\n"u8.ToArray());
            Assert.True(await Support.Eventually.TrueAsync(async () => await ReadLog(spec.Id) == "one\n", TimeSpan.FromSeconds(10)));
        }
        await using (var second = await _monitor.AttachAsync(spec.Id))
        {
            await second.WriteStdinAsync("two\n"u8.ToArray());
            Assert.True(await Support.Eventually.TrueAsync(async () => await ReadLog(spec.Id) == "one\ntwo\n", TimeSpan.FromSeconds(10)),
                await ReadLog(spec.Id));
        }
        await _monitor.StopAsync(spec.Id, TimeSpan.FromSeconds(1));
    }

    [Fact]
    public async Task Stderr_is_told_apart_on_the_attach_socket_and_in_the_log()
    {
        var spec = Spec("sh", "-c", "echo out; echo err >&2");
        await _monitor.CreateAsync(spec);
        await using var attach = await _monitor.AttachAsync(spec.Id);
        await _monitor.StartAsync(spec.Id);
        var frames = new List<(StdStream, string)>();
        await foreach (var f in attach.ReadAllAsync(Timeout())) frames.Add((f.Stream, Encoding.UTF8.GetString(f.Data.Span)));
        Assert.Contains((StdStream.Stdout, "out\n"), frames);
        Assert.Contains((StdStream.Stderr, "err\n"), frames);
        await _monitor.WaitForExitAsync(spec.Id, Timeout());
        var entries = await ToList(ContainerLogReader.ReadAsync(_monitor.PathsFor(spec.Id).Log, new LogReadOptions()));
        Assert.Equal([(StdStream.Stdout, "out\n"), (StdStream.Stderr, "err\n")],
            entries.Select(e => (e.Stream, Encoding.UTF8.GetString(e.Bytes))).OrderBy(e => e.Stream).ToList());
    }

    [Fact]
    public async Task A_tty_container_gets_a_pty_and_follows_resizes()
    {
        var tty = Spec("tty") with { Tty = true };
        var (exit, log) = await RunToExit(tty);
        Assert.Equal(0, exit.ExitCode);
        Assert.Equal("/dev/pts/0", log.Trim());

        var resize = Spec("sh", "-c", "read x; stty size") with { Tty = true, OpenStdin = true, ConsoleSize = new ConsoleSize(24, 80) };
        await _monitor.CreateAsync(resize);
        await using var attach = await _monitor.AttachAsync(resize.Id);
        await _monitor.StartAsync(resize.Id);
        await _monitor.ResizeAsync(resize.Id, 33, 101);
        await Task.Delay(200);
        await attach.WriteStdinAsync("go\n"u8.ToArray());
        var output = new StringBuilder();
        await foreach (var f in attach.ReadAllAsync(Timeout())) output.Append(Encoding.UTF8.GetString(f.Data.Span));
        _output.WriteLine(output.ToString());
        Assert.Contains("33 101", output.ToString());
    }

    [Fact]
    public async Task Exec_runs_as_the_named_user_with_separate_streams_and_its_exit_code()
    {
        var spec = Spec("sleep", "30");
        await _monitor.RunAsync(spec);
        var id = await _monitor.ExecAsync(spec.Id, new ExecSpec { Args = ["id", "-u"], User = "app" });
        Assert.Equal(new ExecResult(0, "1000\n", ""), id);
        var groups = await _monitor.ExecAsync(spec.Id, new ExecSpec { Args = ["id", "-G"], User = "app" });
        Assert.Equal("1000 10 50", groups.Stdout.Trim());
        var nobody = await _monitor.ExecAsync(spec.Id, new ExecSpec { Args = ["id", "-u"], User = "65534:50" });
        Assert.Equal("65534", nobody.Stdout.Trim());
        var mixed = await _monitor.ExecAsync(spec.Id, new ExecSpec { Args = ["sh", "-c", "echo out; echo err >&2; exit 5"] });
        Assert.Equal(new ExecResult(5, "out\n", "err\n"), mixed);

        using var stdin = new MemoryStream("through stdin"u8.ToArray());
        using var stdout = new MemoryStream();
        var code = await _monitor.ExecAsync(spec.Id, new ExecSpec { Args = ["cat"] }, stdin, stdout, Stream.Null);
        Assert.Equal(0, code);
        Assert.Equal("through stdin", Encoding.UTF8.GetString(stdout.ToArray()));

        var missing = await Assert.ThrowsAnyAsync<OciRuntimeException>(() => _monitor.ExecAsync(spec.Id, new ExecSpec { Args = ["/nope"] }));
        _output.WriteLine(missing.Message);
    }

    [Fact]
    public async Task Interactive_exec_through_conmon_with_stdin_and_with_a_tty()
    {
        var spec = Spec("sleep", "30");
        await _monitor.RunAsync(spec);

        await using (var cat = await _monitor.ExecAttachedAsync(spec.Id, new ExecSpec { Args = ["cat"] }, stdin: true, Timeout()))
        {
            await cat.Attachment.WriteStdinAsync("hi there\n"u8.ToArray());
            cat.Attachment.CloseStdin();
            var output = new StringBuilder();
            await foreach (var f in cat.Attachment.ReadAllAsync(Timeout())) output.Append(Encoding.UTF8.GetString(f.Data.Span));
            Assert.Equal("hi there\n", output.ToString());
            Assert.Equal(0, await cat.WaitForExitAsync(Timeout()));
        }

        var tty = new ExecSpec { Args = ["sh", "-c", "tty; stty size; exit 3"], Tty = true, ConsoleSize = new ConsoleSize(30, 90) };
        await using (var session = await _monitor.ExecAttachedAsync(spec.Id, tty, stdin: false, Timeout()))
        {
            var output = new StringBuilder();
            await foreach (var f in session.Attachment.ReadAllAsync(Timeout())) output.Append(Encoding.UTF8.GetString(f.Data.Span));
            _output.WriteLine(output.ToString());
            Assert.Matches(@"^/dev/pts/\d+\r\n30 90\r\n$", output.ToString());
            Assert.Equal(3, await session.WaitForExitAsync(Timeout()));
        }
        Assert.False(Directory.Exists(Path.Combine(_monitor.PathsFor(spec.Id).Root, "exec")) &&
                     Directory.EnumerateDirectories(Path.Combine(_monitor.PathsFor(spec.Id).Root, "exec")).Any());
    }

    [Fact]
    public async Task Default_containers_get_docker_caps_and_seccomp_privileged_ones_get_neither_limit()
    {
        var (_, log) = await RunToExit(Spec("grep", "-E", "^(CapEff|Seccomp):", "/proc/self/status"));
        Assert.Contains("CapEff:\t00000000a80425fb", log);
        Assert.Contains("Seccomp:\t2", log);

        var (_, privileged) = await RunToExit(Spec("grep", "-E", "^(CapEff|Seccomp):", "/proc/self/status") with { Privileged = true });
        var hostCapEff = File.ReadLines("/proc/self/status").First(l => l.StartsWith("CapEff:")).Split('\t')[1];
        Assert.Contains("CapEff:\t" + hostCapEff, privileged);
        Assert.Contains("Seccomp:\t0", privileged);

        var (_, tweaked) = await RunToExit(Spec("grep", "^CapEff:", "/proc/self/status") with { CapAdd = ["NET_ADMIN"], CapDrop = ["chown", "CAP_MKNOD"] });
        var expected = Capabilities.Mask(Capabilities.Default.Except(["CAP_CHOWN", "CAP_MKNOD"]).Append("CAP_NET_ADMIN"));
        Assert.Contains($"CapEff:\t{expected:x16}", tweaked);
    }

    [Fact]
    public async Task Cgroup_limits_are_written_and_memory_is_enforced()
    {
        var spec = Spec("sleep", "30") with { Memory = 64 << 20, NanoCpus = 500_000_000, CpuShares = 512, PidsLimit = 50 };
        await _monitor.RunAsync(spec);
        var cg = "/sys/fs/cgroup";
        Assert.Equal("67108864", File.ReadAllText($"{cg}/memory/flotilla/{spec.Id}/memory.limit_in_bytes").Trim());
        Assert.Equal("50000", File.ReadAllText($"{cg}/cpu/flotilla/{spec.Id}/cpu.cfs_quota_us").Trim());
        Assert.Equal("100000", File.ReadAllText($"{cg}/cpu/flotilla/{spec.Id}/cpu.cfs_period_us").Trim());
        Assert.Equal("512", File.ReadAllText($"{cg}/cpu/flotilla/{spec.Id}/cpu.shares").Trim());
        Assert.Equal("50", File.ReadAllText($"{cg}/pids/flotilla/{spec.Id}/pids.max").Trim());
        await _monitor.StopAsync(spec.Id, TimeSpan.Zero);

        var hog = Spec("sh", "-c", "a=xxxxxxxxxxxxxxxx; while true; do a=$a$a; done") with { Memory = 32 << 20 };
        var (exit, _) = await RunToExit(hog);
        Assert.Equal(137, exit.ExitCode);
        Assert.True(exit.OomKilled);
    }

    [Fact]
    public async Task A_readonly_rootfs_refuses_writes()
    {
        var (exit, log) = await RunToExit(Spec("touch", "/newfile") with { ReadonlyRootfs = true });
        Assert.NotEqual(0, exit.ExitCode);
        Assert.Contains("Read-only file system", log);
        Assert.False(File.Exists(Path.Combine(_fs.Rootfs, "newfile")));

        // The generated /etc files stay writable, and the default rootfs is writable.
        var (ok, _) = await RunToExit(Spec("sh", "-c", "echo 1.2.3.4 x >> /etc/hosts && touch /written"));
        Assert.Equal(0, ok.ExitCode);
        Assert.True(File.Exists(Path.Combine(_fs.Rootfs, "written")));
    }

    [Fact]
    public async Task A_readonly_bind_mount_is_readable_not_writable()
    {
        var host = Path.Combine(_fs.Root, "shared");
        Directory.CreateDirectory(host);
        await File.WriteAllTextAsync(Path.Combine(host, "f"), "from the host\n");
        var spec = Spec("sh", "-c", "cat /data/f; touch /data/g") with { Binds = [new BindMount(host, "/data", ReadOnly: true)] };
        var (exit, log) = await RunToExit(spec);
        Assert.NotEqual(0, exit.ExitCode);
        Assert.Contains("from the host", log);
        Assert.Contains("Read-only file system", log);
        Assert.False(File.Exists(Path.Combine(host, "g")));
    }

    [Fact]
    public async Task Network_none_has_only_loopback_and_the_hostname_is_set()
    {
        var (_, log) = await RunToExit(Spec("sh", "-c", "ls /sys/class/net; hostname; cat /etc/hostname") with { Hostname = "boat" });
        Assert.Equal("lo\nboat\nboat\n", log);
    }

    [Fact]
    public async Task A_new_monitor_adopts_a_running_container_and_stops_it()
    {
        var spec = Spec("sleep", "30");
        var pid = await _monitor.RunAsync(spec);

        var restarted = NewMonitor(); // what the engine builds after a restart: nothing in memory
        Assert.Contains(spec.Id, restarted.KnownContainers());
        var seen = await restarted.AdoptAsync(spec.Id);
        Assert.Equal(ObservedStatus.Running, seen.Status);
        Assert.Equal(pid, seen.Pid);
        Assert.NotNull(seen.ConmonPid);

        var exec = await restarted.ExecAsync(spec.Id, new ExecSpec { Args = ["echo", "still here"] });
        Assert.Equal("still here\n", exec.Stdout);

        var exit = await restarted.StopAsync(spec.Id, TimeSpan.FromSeconds(1));
        Assert.Contains(exit.ExitCode, new[] { 143, 137 });
        var after = await restarted.AdoptAsync(spec.Id);
        Assert.Equal(ObservedStatus.Exited, after.Status);
        Assert.Equal(exit.ExitCode, after.Exit!.ExitCode);
    }

    [Fact]
    public async Task A_container_that_exited_while_nobody_watched_is_observed_as_exited()
    {
        var spec = Spec("sh", "-c", "exit 4");
        await _monitor.RunAsync(spec);
        await Eventually(() => File.Exists(_monitor.PathsFor(spec.Id).ExitFile));
        var seen = await NewMonitor().AdoptAsync(spec.Id);
        Assert.Equal(ObservedStatus.Exited, seen.Status);
        Assert.Equal(4, seen.Exit!.ExitCode);
        Assert.Equal(ObservedStatus.Missing, (await NewMonitor().AdoptAsync(new string('a', 64))).Status);
    }

    [Fact]
    public async Task Pause_resume_and_ps()
    {
        var spec = Spec("sleep", "30");
        var pid = await _monitor.RunAsync(spec);
        Assert.Equal([pid], await _monitor.Runtime.PsAsync(spec.Id));
        await _monitor.PauseAsync(spec.Id);
        Assert.Equal(ObservedStatus.Paused, (await _monitor.AdoptAsync(spec.Id)).Status);
        await _monitor.ResumeAsync(spec.Id);
        Assert.Equal(ObservedStatus.Running, (await _monitor.AdoptAsync(spec.Id)).Status);
    }

    [Fact]
    public async Task Following_the_log_ends_when_the_container_exits()
    {
        var spec = Spec("sh", "-c", "echo a; sleep 0.5; echo b; printf tail");
        await _monitor.RunAsync(spec);
        var exited = _monitor.WaitForExitAsync(spec.Id, Timeout());
        var lines = await ToList(ContainerLogReader.ReadAsync(_monitor.PathsFor(spec.Id).Log, new LogReadOptions { Follow = true }, exited, Timeout()));
        Assert.Equal(["a\n", "b\n", "tail"], lines.Select(e => Encoding.UTF8.GetString(e.Bytes)).ToList());
    }

    [Fact]
    public async Task Runtime_reports_its_version()
    {
        Assert.StartsWith("runc version 1.", await _monitor.Runtime.VersionAsync());
        Assert.Null(await _monitor.Runtime.StateAsync(new string('b', 64)));
        // crun shares the CLI: the same driver runs it (this hybrid-cgroup host only lets it report its version).
        if (File.Exists("/usr/bin/crun"))
            Assert.StartsWith("crun version 1.", await new RuncDriver("/usr/bin/crun", Path.Combine(_fs.DataRoot, "crun")).VersionAsync());
    }

    private static CancellationToken Timeout() => new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token;

    private static async Task<List<T>> ToList<T>(IAsyncEnumerable<T> items)
    {
        var list = new List<T>();
        await foreach (var i in items) list.Add(i);
        return list;
    }

    private static async Task Eventually(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException("condition not met");
            await Task.Delay(20);
        }
    }
}
