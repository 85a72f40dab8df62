// `--containers N`: N long-running containers on one all-in-one host (issue 15 item 10). Reports whether `docker ps`
// says running for every one of them, the engine process's threads, memory and descriptors, and `docker ps` latency.
using System.Diagnostics;
using System.Globalization;
using Flotilla.Bench.Common;
using static Flotilla.Bench.Common.BenchStats;

namespace Flotilla.Bench.Run;

internal sealed class ManyContainersBench(string root, int containers, int parallel) : IAsyncDisposable
{
    private const string Image = "localhost/flotilla-bench/many:latest";
    private BenchFlotilla? _flotilla;

    public async Task RunAsync(CancellationToken ct)
    {
        Console.WriteLine($"Flotilla many-containers benchmark: {containers} x `docker run -d --network none {Image} sleep 100000`, " +
            $"{parallel} in parallel, {Environment.ProcessorCount} cores, temp root {root}");
        Console.WriteLine($"load average at start: {LoadAverage()}; fs.inotify.max_user_instances = {Sysctl("fs/inotify/max_user_instances")}");
        var rootfsTar = Path.Combine(root, "rootfs.tar");
        RunBench.WriteRootfs(rootfsTar, "sleep");
        Console.WriteLine("[flotilla] starting embedded PostgreSQL and the all-in-one host (in this process) ...");
        _flotilla = await BenchFlotilla.StartAsync(root, ct);
        await Check(await Docker(ct, "import", rootfsTar, Image), "docker import");
        await Check(await Docker(ct, "run", "--rm", "--network", "none", Image, "true"), "warm-up run");

        var idle = Engine();
        var psIdle = await PsLatencyAsync(ct);
        Console.WriteLine($"[idle] {idle}; docker ps median {Median(psIdle):F3} s");

        // Start them, `parallel` at a time; every failure is counted and its first message shown.
        var started = Stopwatch.StartNew();
        var failures = 0;
        string? firstFailure = null;
        var next = 0;
        var runTimes = new List<double>();
        var lockObj = new Lock();
        await Task.WhenAll(Enumerable.Range(0, parallel).Select(async _ =>
        {
            while (Interlocked.Increment(ref next) is var i && i <= containers)
            {
                var t = Stopwatch.StartNew();
                var r = await Docker(ct, "run", "-d", "--network", "none", "--name", $"many-{i}", Image, "sleep", "100000");
                lock (lockObj)
                {
                    runTimes.Add(t.Elapsed.TotalSeconds);
                    if (r.ExitCode != 0) { failures++; firstFailure ??= r.Stderr.Trim(); }
                }
                if (i % 100 == 0) Console.WriteLine($"[run] {i}/{containers} after {started.Elapsed.TotalSeconds:F0} s; {Engine()}");
            }
        }));
        var runSeconds = started.Elapsed.TotalSeconds;
        Console.WriteLine($"[run] {containers - failures} started in {runSeconds:F1} s ({failures} failed{(firstFailure is null ? "" : $": {firstFailure}")}); " +
            $"docker run median {Median(runTimes):F3} s, p90 {P90(runTimes):F3} s");

        // Give a false exit time to show up (they came 7 ms after the start), then look.
        await Task.Delay(TimeSpan.FromSeconds(10), ct);
        var (running, exited, other) = await StatesAsync(ct);
        var sleeps = CountProcesses("sleep 100000");
        var conmons = CountProcesses("/usr/bin/conmon", root + "/");
        var busy = Engine();
        var ps = await PsLatencyAsync(ct);
        Console.WriteLine($"[{containers}] docker ps: {running} running, {exited} exited, {other} other; processes: {conmons} conmon, {sleeps} `sleep 100000`");
        Console.WriteLine($"[{containers}] {busy}; docker ps median {Median(ps):F3} s, p90 {P90(ps):F3} s ({Samples(ps)})");

        // Remove them all, `parallel` at a time.
        var removal = Stopwatch.StartNew();
        var ids = (await Check(await Docker(ct, "ps", "-aq"), "docker ps -aq")).Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var removeFailures = 0;
        var queue = new Queue<string[]>(ids.Chunk(20));
        await Task.WhenAll(Enumerable.Range(0, parallel).Select(async _ =>
        {
            while (true)
            {
                string[] chunk;
                lock (lockObj) { if (!queue.TryDequeue(out chunk!)) return; }
                var r = await Docker(ct, ["rm", "-f", .. chunk]);
                if (r.ExitCode != 0) Interlocked.Increment(ref removeFailures);
            }
        }));
        var left = (await Docker(ct, "ps", "-aq")).Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length;
        Console.WriteLine($"[remove] docker rm -f of {ids.Length} in {removal.Elapsed.TotalSeconds:F1} s ({removeFailures} failed calls); " +
            $"left: {left} containers, {CountProcesses("sleep 100000")} `sleep 100000`; {Engine()}");

        Console.WriteLine();
        Console.WriteLine($"load average at end: {LoadAverage()}");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"SUMMARY many n={containers} started={containers - failures} running={running} exited={exited} other={other} " +
            $"threads={busy.Threads} (idle {idle.Threads}) rss={busy.RssMb:F0}MB (idle {idle.RssMb:F0}MB) pidfds={busy.Pidfds} inotify={busy.Inotify} " +
            $"ps_median={Median(ps):F3}s (idle {Median(psIdle):F3}s) run_total={runSeconds:F0}s state={(running == containers ? "correct" : "WRONG")}"));
    }

    private async Task<List<double>> PsLatencyAsync(CancellationToken ct)
    {
        var xs = new List<double>();
        for (var i = 0; i < 7; i++)
        {
            var t = Stopwatch.StartNew();
            await Check(await Docker(ct, "ps"), "docker ps");
            xs.Add(t.Elapsed.TotalSeconds);
        }
        return xs;
    }

    private async Task<(int Running, int Exited, int Other)> StatesAsync(CancellationToken ct)
    {
        var lines = (await Check(await Docker(ct, "ps", "-a", "--format", "{{.State}}"), "docker ps -a")).Stdout
            .Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var running = lines.Count(l => l == "running");
        var exited = lines.Count(l => l == "exited");
        return (running, exited, lines.Length - running - exited);
    }

    /// <summary>This process (the engine runs in it): threads, resident memory, pidfds and inotify instances held.</summary>
    private static EngineFacts Engine()
    {
        var status = File.ReadAllLines("/proc/self/status");
        long Field(string name) => long.Parse(status.First(l => l.StartsWith(name + ":", StringComparison.Ordinal)).Split(':')[1].Trim().Split(' ')[0],
            CultureInfo.InvariantCulture);
        int pidfds = 0, inotify = 0, fds = 0;
        foreach (var fd in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            fds++;
            var target = new FileInfo(fd).LinkTarget ?? "";
            if (target.Contains("[pidfd]", StringComparison.Ordinal)) pidfds++;
            else if (target.Contains("inotify", StringComparison.Ordinal)) inotify++;
        }
        return new EngineFacts((int)Field("Threads"), Field("VmRSS") / 1024.0, fds, pidfds, inotify);
    }

    private sealed record EngineFacts(int Threads, double RssMb, int Fds, int Pidfds, int Inotify)
    {
        public override string ToString() => $"engine process: {Threads} threads, RSS {RssMb:F0} MB, {Fds} fds ({Pidfds} pidfds, {Inotify} inotify)";
    }

    /// <summary>Processes whose command line starts with <paramref name="prefix"/> and names <paramref name="naming"/>.</summary>
    private static int CountProcesses(string prefix, string naming = "")
    {
        var n = 0;
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out _)) continue;
            try
            {
                var cmdline = File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' ');
                if (cmdline.StartsWith(prefix, StringComparison.Ordinal) && cmdline.Contains(naming, StringComparison.Ordinal)) n++;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
            }
        }
        return n;
    }

    private static string Sysctl(string path)
    {
        try { return File.ReadAllText(Path.Combine("/proc/sys", path)).Trim(); }
        catch (IOException) { return "?"; }
    }

    private Task<ProcResult> Docker(CancellationToken ct, params string[] args) => _flotilla!.DockerAsync(ct, args);

    private static Task<ProcResult> Check(ProcResult r, string what) =>
        r.ExitCode == 0 ? Task.FromResult(r) : throw new InvalidOperationException($"{what} failed (exit {r.ExitCode}): {r.Stdout}{r.Stderr}");

    public async ValueTask DisposeAsync()
    {
        if (_flotilla is not null)
        {
            // Whatever is left (a failed or cancelled run): removed before the host goes.
            try
            {
                var ids = (await _flotilla.DockerAsync(CancellationToken.None, "ps", "-aq")).Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
                foreach (var chunk in ids.Chunk(50)) await _flotilla.DockerAsync(CancellationToken.None, ["rm", "-f", .. chunk]);
            }
            catch (Exception e) when (e is InvalidOperationException or IOException)
            {
                Console.Error.WriteLine($"cleanup: {e.Message}");
            }
            await _flotilla.DisposeAsync();
        }
        RunBench.KillStragglers(root);
    }
}
