using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Flotilla.NodeRuntime.Oci;
using Xunit;
using Xunit.Abstractions;

namespace Flotilla.Tests.Oci;

/// <summary>
/// Issue 15 item 10: watching exits must not cost an inotify instance or a thread per container. Past the machine's
/// <c>fs.inotify.max_user_instances</c> (128 here, shared by every process of the user) a per-container watcher
/// failed and the failure was recorded as an exit while the container ran.
/// </summary>
[Collection("oci-containers")]
public sealed class ExitWatchSpec : IDisposable
{
    private const int Containers = 300;
    private readonly ITestOutputHelper _output;
    private readonly string _root = Path.Combine(Path.GetTempPath(), "flx-" + Guid.NewGuid().ToString("N")[..8]);
    private readonly List<Process> _fakes = [];

    public ExitWatchSpec(ITestOutputHelper output)
    {
        _output = output;
        Directory.CreateDirectory(_root);
    }

    public void Dispose()
    {
        foreach (var p in _fakes)
        {
            try { if (!p.HasExited) p.Kill(); } catch (InvalidOperationException) { }
            p.Dispose();
        }
        Directory.Delete(_root, recursive: true);
    }

    private ConmonMonitor NewMonitor() =>
        new(new ConmonOptions { DataRoot = Path.Combine(_root, "d") }, new RuncDriver("/usr/sbin/runc", Path.Combine(_root, "runc")));

    /// <summary>
    /// A stand-in for conmon: a process whose command line names the container (<c>-c &lt;id&gt;</c>, as conmon's
    /// does), recorded in the conmon pid file; once its stdin is closed (<see cref="Release"/>) it records
    /// <paramref name="code"/> the way conmon does (a temp file renamed into the exit dir) and exits.
    /// </summary>
    private void StartFakeConmon(ConmonMonitor monitor, string id, int code)
    {
        var paths = monitor.PathsFor(id);
        Directory.CreateDirectory(paths.Userdata);
        Directory.CreateDirectory(paths.Exits);
        var psi = new ProcessStartInfo("/bin/sh") { UseShellExecute = false, RedirectStandardInput = true };
        // sh -c SCRIPT $0 $1 …: "$0 $1" = "-c <id>" is what ConmonPid looks for in the command line.
        foreach (var a in new[] { "-c", "read _; echo \"$2\" > \"$3.tmp\" && mv \"$3.tmp\" \"$3\"", "-c", id,
                     code.ToString(CultureInfo.InvariantCulture), paths.ExitFile })
            psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        _fakes.Add(p);
        File.WriteAllText(paths.ConmonPidFile, p.Id.ToString(CultureInfo.InvariantCulture));
    }

    /// <summary>Every fake conmon reads EOF (whenever it gets to its read) and exits.</summary>
    private void Release()
    {
        foreach (var p in _fakes) p.StandardInput.Close();
    }

    private static string NewId() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));

    private static int Threads() => Process.GetCurrentProcess().Threads.Count;

    [Fact]
    public async Task Three_hundred_running_containers_are_watched_and_none_is_reported_exited_before_it_exits()
    {
        var monitor = NewMonitor();
        var ids = Enumerable.Range(0, Containers).Select(_ => NewId()).ToList();
        for (var i = 0; i < Containers; i++) StartFakeConmon(monitor, ids[i], i % 200);
        foreach (var id in ids) Assert.NotNull(monitor.ConmonPid(id));

        var threadsBefore = Threads();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        var waits = ids.Select(id => monitor.WaitForExitAsync(id, timeout.Token)).ToList();

        // Every process still runs: no wait may have ended (before the fix: ~126 watched, the rest failed at once).
        await Task.Delay(TimeSpan.FromSeconds(2));
        var ended = waits.Where(w => w.IsCompleted).ToList();
        if (ended.Count > 0) _output.WriteLine($"first early end: {(ended[0].IsFaulted ? ended[0].Exception!.GetBaseException().Message : "completed")}");
        Assert.Empty(ended);
        var threadsWatching = Threads();
        _output.WriteLine($"threads: {threadsBefore} before, {threadsWatching} while watching {Containers}");
        Assert.True(threadsWatching - threadsBefore < 30, $"{threadsWatching - threadsBefore} more threads for {Containers} watched containers");

        // Every fake conmon records its code and exits.
        Release();
        var exits = await Task.WhenAll(waits);
        for (var i = 0; i < Containers; i++) Assert.Equal(i % 200, exits[i].ExitCode);
    }

    [Fact]
    public async Task Where_exits_cannot_be_watched_the_wait_polls_and_does_not_end_early()
    {
        // As on a kernel without pidfds: failing to watch is "unknown, keep looking", never an exit.
        var monitor = new ConmonMonitor(new ConmonOptions { DataRoot = Path.Combine(_root, "d") },
            new RuncDriver("/usr/sbin/runc", Path.Combine(_root, "runc")))
        { Exits = new ProcessExitWatch("test: no pidfds here") };
        var ids = Enumerable.Range(0, 5).Select(_ => NewId()).ToList();
        for (var i = 0; i < ids.Count; i++) StartFakeConmon(monitor, ids[i], 40 + i);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var waits = ids.Select(id => monitor.WaitForExitAsync(id, timeout.Token)).ToList();
        await Task.Delay(TimeSpan.FromSeconds(2.5));
        Assert.DoesNotContain(waits, w => w.IsCompleted);
        Release();
        Assert.Equal([40, 41, 42, 43, 44], (await Task.WhenAll(waits)).Select(e => e.ExitCode));
    }
}
