using System.Diagnostics;
using Flotilla.NodeRuntime.Fencing;
using Flotilla.Tests.Support;
using Xunit;

namespace Flotilla.Tests.Fencing;

/// <summary>
/// The host watchdog for real: a process in a container cgroup of its own (under a cgroup parent made here), the
/// watchdog as the real <c>flotilla watchdog</c> process started by <see cref="WatchdogClient"/>, the engine's side
/// gone (its client disposed, as when the engine is killed). Needs root (cgroups).
/// </summary>
public sealed class HostWatchdogSpec : IDisposable
{
    private readonly string _parent = "/flotilla-test-" + Guid.NewGuid().ToString("N")[..8];
    private readonly string _data = Path.Combine(Path.GetTempPath(), "flt-watchdog-" + Guid.NewGuid().ToString("N")[..8]);
    private readonly List<Process> _processes = [];

    private static string Dll => Path.Combine(AppContext.BaseDirectory, "flotilla.dll");

    private static string? Unavailable() =>
        Environment.UserName != "root" ? "needs root (cgroups)"
        : !Directory.Exists("/sys/fs/cgroup/freezer") && !File.Exists("/sys/fs/cgroup/cgroup.controllers") ? "no cgroup freezer here"
        : !File.Exists(Dll) ? "flotilla.dll is not built next to the tests"
        : null;

    /// <summary>A <c>sleep</c> in cgroup <c>&lt;parent&gt;/&lt;id&gt;</c> of the hierarchy the fence uses, as runc would put a container's init.</summary>
    private Process SleepIn(string id)
    {
        var sleep = Process.Start(new ProcessStartInfo("sleep", "1000") { UseShellExecute = false })!;
        _processes.Add(sleep);
        var hierarchy = Directory.Exists("/sys/fs/cgroup/freezer") ? "/sys/fs/cgroup/freezer" : "/sys/fs/cgroup";
        var dir = hierarchy + _parent + "/" + id;
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "cgroup.procs"), sleep.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return sleep;
    }

    private static long In(TimeSpan span) => Stopwatch.GetTimestamp() + (long)(span.TotalSeconds * Stopwatch.Frequency);

    [SkippableFact]
    public async Task The_watchdog_kills_the_hosts_containers_when_the_lease_is_not_confirmed_in_time_and_outlives_the_engine()
    {
        var why = Unavailable();
        Skip.If(why is not null, why);
        var paths = WatchdogPaths.Of(_data);
        var engine = new WatchdogClient(paths, ["dotnet", Dll, "watchdog", "--data", _data, "--cgroup-parent", _parent], _ => { });
        await engine.ConfirmAsync(7, In(TimeSpan.Zero), CancellationToken.None); // starts the watchdog (it takes a moment)

        // Confirmed for 2 s, then the engine is gone (killed: no release, no more confirmations).
        await engine.ConfirmAsync(7, In(TimeSpan.FromSeconds(2)), CancellationToken.None);
        var container = SleepIn("c1");
        await engine.DisposeAsync();
        await Task.Delay(1200);
        Assert.False(container.HasExited, "killed before the deadline");
        Assert.True(container.WaitForExit(TimeSpan.FromSeconds(3)), "still running 1.8 s after the deadline");

        // Recorded for the engine to report, with the epoch and the container.
        var records = new List<FenceRecord>();
        await Eventually.TrueAsync(() => Task.FromResult((records = [.. records, .. HostWatchdog.TakeRecords(paths)]).Count > 0), TimeSpan.FromSeconds(3));
        var fence = Assert.Single(records);
        Assert.Equal((7L, "c1"), (fence.Epoch, Assert.Single(fence.ContainerIds)));

        // Still fenced: whatever appears is killed too, until a confirmation comes again.
        var late = SleepIn("c2");
        Assert.True(late.WaitForExit(TimeSpan.FromSeconds(2)), "a run started after the fence survived");

        // A returning engine (same epoch: its lease held) confirms again: the host may run containers again.
        await using var back = new WatchdogClient(paths, ["dotnet", Dll, "watchdog", "--data", _data, "--cgroup-parent", _parent], _ => { });
        await back.ConfirmAsync(7, In(TimeSpan.FromSeconds(30)), CancellationToken.None);
        var kept = SleepIn("c3");
        await Task.Delay(800);
        Assert.False(kept.HasExited);
        await back.ReleaseAsync(CancellationToken.None);
        Assert.True(await Eventually.TrueAsync(() => Task.FromResult(!File.Exists(paths.Socket)), TimeSpan.FromSeconds(5)), "the watchdog did not stand down");
    }

    [SkippableFact]
    public async Task A_confirmation_that_arrives_late_never_extends_the_deadline_past_what_the_renewal_covered()
    {
        var why = Unavailable();
        Skip.If(why is not null, why);
        var paths = WatchdogPaths.Of(_data);
        await using var engine = new WatchdogClient(paths, ["dotnet", Dll, "watchdog", "--data", _data, "--cgroup-parent", _parent], _ => { });
        await engine.ConfirmAsync(3, In(TimeSpan.Zero), CancellationToken.None);
        await engine.ConfirmAsync(3, In(TimeSpan.FromSeconds(1)), CancellationToken.None);
        var container = SleepIn("c1");
        // A renewal sent long ago (the engine was paused after it) carries a deadline already past: no effect.
        await engine.ConfirmAsync(3, In(TimeSpan.FromSeconds(-5)), CancellationToken.None);
        Assert.True(container.WaitForExit(TimeSpan.FromSeconds(3)));
        await engine.ReleaseAsync(CancellationToken.None);
    }

    public void Dispose()
    {
        foreach (var p in _processes)
        {
            try
            {
                if (!p.HasExited) p.Kill();
            }
            catch (InvalidOperationException)
            {
            }
            p.Dispose();
        }
        // A running watchdog of this test (if an assertion failed before its release) stops with its socket gone.
        foreach (var hierarchy in new[] { "/sys/fs/cgroup/freezer", "/sys/fs/cgroup" })
        {
            var root = hierarchy + _parent;
            if (!Directory.Exists(root)) continue;
            foreach (var dir in Directory.EnumerateDirectories(root)) Retry(() => Directory.Delete(dir));
            Retry(() => Directory.Delete(root));
        }
        foreach (var proc in Directory.EnumerateDirectories("/proc"))
        {
            try
            {
                if (File.ReadAllText(Path.Combine(proc, "cmdline")).Contains(_data, StringComparison.Ordinal)
                    && int.TryParse(Path.GetFileName(proc), out var pid)) Process.GetProcessById(pid).Kill();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or InvalidOperationException)
            {
            }
        }
        if (Directory.Exists(_data)) Directory.Delete(_data, recursive: true);
    }

    private static void Retry(Action action)
    {
        for (var i = 0; i < 20; i++)
        {
            try
            {
                action();
                return;
            }
            catch (IOException)
            {
                Thread.Sleep(50);
            }
        }
    }
}
