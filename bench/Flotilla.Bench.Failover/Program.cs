// Failover, judged by the hosts' ground truth (issue 14): in a 3-host cluster (network namespaces on this machine,
// NetnsCluster) one host fails in one of several ways; a RunSampler counts every container's runs on every host each
// 0.1 s for the whole round, while the Docker API is polled each 0.2 s. See bench/README.md.
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Flotilla.Bench.Common;
using Flotilla.Tests.MultiHost;

namespace Flotilla.Bench.Failover;

public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        var options = BenchProgram.Parse(args,
            "usage: Flotilla.Bench.Failover [--rounds N (per scenario, default 10)] [--quick (N=2)] [--scenarios a,b,... (default: all of " +
            string.Join(", ", FailoverScenario.All.Select(s => s.Name)) + ")] [--hosts H (default 3)] [--containers C (per round, default 6)] " +
            "[--stable-after 1s] [--heartbeat-pause 1500ms] (default: the CLI's) [--keep (keep every process's log)]   (needs root)",
            iterations: 10, quickIterations: 2, sizeMb: 1, "--rounds", "--scenarios", "--hosts", "--containers", "--stable-after", "--heartbeat-pause");
        if (options is null) return Environment.ExitCode;
        var rounds = options.Values.TryGetValue("--rounds", out var r) ? int.Parse(r, CultureInfo.InvariantCulture) : options.Iterations;
        var hosts = options.Values.TryGetValue("--hosts", out var h) ? int.Parse(h, CultureInfo.InvariantCulture) : 3;
        var containers = options.Values.TryGetValue("--containers", out var c) ? int.Parse(c, CultureInfo.InvariantCulture) : 6;
        var names = options.Values.TryGetValue("--scenarios", out var s) ? s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) : null;
        var unknown = names?.Where(n => FailoverScenario.All.All(x => x.Name != n)).ToList() ?? [];
        if (hosts < 3 || containers < 1 || rounds < 1 || unknown.Count > 0)
        {
            Console.Error.WriteLine(unknown.Count > 0 ? $"unknown scenario(s): {string.Join(", ", unknown)}" : "--hosts must be >= 3, --containers and --rounds >= 1");
            return 2;
        }
        if (NetnsCluster.UnavailableReason() is { } reason)
        {
            Console.Error.WriteLine($"cannot run: {reason}");
            return 2;
        }
        var scenarios = names is null ? FailoverScenario.All : FailoverScenario.All.Where(x => names.Contains(x.Name)).ToList();
        var stableAfter = options.Values.GetValueOrDefault("--stable-after");
        var heartbeatPause = options.Values.GetValueOrDefault("--heartbeat-pause");
        return await BenchProgram.RunAsync("ffo", options.Keep,
            root => new FailoverBench(root, scenarios, rounds, hosts, containers, stableAfter, heartbeatPause, options.Keep),
            (bench, ct) => bench.RunAsync(ct));
    }
}

/// <summary>A way a host fails. <see cref="Moves"/>: whether its containers are meant to run elsewhere afterwards.</summary>
internal sealed record FailoverScenario(string Name, string Fault, bool Moves)
{
    public static readonly IReadOnlyList<FailoverScenario> All =
    [
        new("engine-crash", "kill -9 of the engine only (conmon, containers stay); back after the move", true),
        new("silent-death", "link down, then every process of the host killed", true),
        new("partition", "link down (PostgreSQL unreachable too); healed after the move", true),
        new("partition-cluster-only", "cluster traffic dropped, PostgreSQL reachable; healed after the move", true),
        new("kill", "every process of the host killed (its peers see connections reset)", true),
        new("pause", "SIGSTOP of every process of the host for 20 s, then SIGCONT", true),
        new("engine-restart-within-lease", "kill -9 of the engine, started again 1 s later", false),
    ];
}

/// <summary>What one round measured (times in seconds from the fault).</summary>
internal sealed record RoundResult(
    int Moving,
    double? Moved,
    double? InspectShowed,
    int OverlapMoments,
    int MaxRuns,
    double SlowestReadMs,
    int Reads,
    int LostAtEnd,
    int TwiceAtEnd,
    int Samples,
    double LongestSampleGapMs,
    string? Failure);

internal sealed class FailoverBench(string root, IReadOnlyList<FailoverScenario> scenarios, int rounds, int hosts, int containersPerRound,
    string? stableAfter, string? heartbeatPause, bool keep) : IAsyncDisposable
{
    private const string Image = "flt-bench/busybox:1";
    private static readonly TimeSpan MoveTimeout = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan PauseFor = TimeSpan.FromSeconds(20);
    private static readonly TimeSpan Settle = TimeSpan.FromSeconds(5);
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(30) };
    private NetnsCluster? _cluster;

    public async Task RunAsync(CancellationToken ct)
    {
        Console.WriteLine($"Flotilla failover benchmark: {hosts} hosts (network namespaces, own init, own files) + gateway, {containersPerRound} containers " +
            $"(--restart always) per round, {rounds} round(s) per scenario, --stable-after {stableAfter ?? "(default)"}, " +
            $"--heartbeat-pause {heartbeatPause ?? "(default)"}, {Environment.ProcessorCount} cores, commit {Commit()}");
        Console.WriteLine($"load average at start: {LoadAverage()}");
        _cluster = await NetnsCluster.StartAsync(new NetnsClusterOptions
        {
            Hosts = hosts,
            StableAfter = stableAfter,
            HeartbeatPause = heartbeatPause,
            Trace = Console.WriteLine,
            KeepLogsIn = keep ? Path.Combine(root, "logs") : null,
        }, ct);
        var cluster = _cluster;
        await cluster.ImportBusyboxEverywhereAsync(Image, ct);

        var results = scenarios.ToDictionary(s => s.Name, _ => new List<RoundResult>());
        // The victims go round the hosts (the oldest member hosts the singletons: one round in N moves those too).
        var next = 0;
        foreach (var scenario in scenarios)
        {
            for (var round = 1; round <= rounds; round++)
            {
                var victim = next++ % hosts + 1;
                RoundResult result;
                try
                {
                    result = await RoundAsync(cluster, scenario, round, victim, ct);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    Console.WriteLine($"    round failed: {e.Message}");
                    result = new RoundResult(0, null, null, 0, 0, 0, 0, 0, 0, 0, 0, e.Message);
                    await RecoverAsync(cluster, victim, ct);
                }
                results[scenario.Name].Add(result);
                Console.WriteLine($"[{scenario.Name} {round}/{rounds}] h{victim}: {Describe(result)}");
            }
        }
        Report(results);
    }

    private async Task<RoundResult> RoundAsync(NetnsCluster cluster, FailoverScenario scenario, int round, int victim, CancellationToken ct)
    {
        await AllReadyAsync(cluster, ct);
        var ids = new List<string>();
        for (var i = 0; i < containersPerRound; i++)
        {
            var run = await cluster.DockerAsync(ct, "run", "-d", "--restart", "always", "--name", $"{scenario.Name}-{round}-{i}", Image, "sleep", "3600");
            if (run.ExitCode != 0) throw new InvalidOperationException($"docker run: {run}");
            ids.Add(run.Stdout.Trim());
        }
        var sampler = cluster.StartSampler();
        try
        {
            var start = await sampler.WaitForAsync(s => ids.All(id => s.Runs(id) == 1), TimeSpan.FromSeconds(30), ct)
                ?? throw new InvalidOperationException("the containers did not all run once");
            var moving = start.On(victim).Intersect(ids).ToList();
            if (moving.Count == 0) throw new InvalidOperationException($"nothing runs on h{victim}");

            using var polling = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var fault = sampler.Elapsed;
            var faultClock = Stopwatch.StartNew();
            var poller = PollInspectAsync(cluster, moving, $"h{victim}", faultClock, polling.Token);
            Task pause = Task.CompletedTask;
            switch (scenario.Name)
            {
                case "engine-crash": await cluster.KillEngineAsync(victim); break;
                case "silent-death": await cluster.SilentDeathAsync(victim, ct); break;
                case "partition": await cluster.PartitionAsync(victim, ct); break;
                case "partition-cluster-only": await cluster.PartitionClusterOnlyAsync(victim, ct); break;
                case "kill": await cluster.KillHostAsync(victim, ct); break;
                case "pause": pause = cluster.PauseHostAsync(victim, PauseFor, ct); break;
                case "engine-restart-within-lease":
                    await cluster.KillEngineAsync(victim);
                    await Task.Delay(TimeSpan.FromSeconds(1), ct);
                    await cluster.StartEngineAsync(victim, ct);
                    break;
                default: throw new InvalidOperationException(scenario.Name);
            }

            RunSample? moved;
            if (scenario.Moves)
                moved = await sampler.WaitForAsync(s => moving.All(id => s.Hosts.GetValueOrDefault(id)?.Any(h => h != victim) == true), MoveTimeout, ct);
            else
            {
                await Task.Delay(TimeSpan.FromSeconds(10), ct);
                moved = sampler.AllRunningElsewhere(moving, victim, fault);
            }

            // The failed side comes back where it can, and the rest is watched: a returning host must neither run a container
            // next to its replacement nor lose one.
            await pause;
            switch (scenario.Name)
            {
                case "engine-crash": await cluster.StartEngineAsync(victim, ct); break;
                case "partition" or "partition-cluster-only" or "silent-death": await cluster.HealAsync(victim, ct); break;
            }
            await Task.Delay(Settle, ct);
            await polling.CancelAsync();
            var (inspectShowed, latencies) = await poller;
            var report = await sampler.StopAsync();
            var last = sampler.Latest!;
            return new RoundResult(
                moving.Count,
                moved is null ? null : (moved.At - fault).TotalSeconds,
                inspectShowed,
                report.OverlapMoments,
                report.MaxRuns,
                latencies.Count == 0 ? 0 : latencies.Max(),
                latencies.Count,
                ids.Count(id => last.Runs(id) == 0),
                ids.Count(id => last.Runs(id) > 1),
                report.Samples,
                report.LongestInterval.TotalMilliseconds,
                scenario.Moves && moved is null ? $"not all running elsewhere within {MoveTimeout.TotalSeconds:F0} s" : null);
        }
        finally
        {
            await sampler.DisposeAsync();
            // A fresh victim (every process of it gone, duplicates included), then nothing of this round.
            await RecoverAsync(cluster, victim, ct);
            await cluster.DockerAsync(ct, ["rm", "-f", .. ids]);
        }
    }

    /// <summary>
    /// The victim healed and restarted, and so is any other host not ready (a host cut off from the cluster but not from
    /// PostgreSQL has been seen to record a peer as down), until every host is ready; three tries.
    /// </summary>
    private static async Task RecoverAsync(NetnsCluster cluster, int victim, CancellationToken ct)
    {
        await cluster.HealAsync(victim, ct);
        var restart = new List<int> { victim };
        for (var attempt = 1; ; attempt++)
        {
            foreach (var i in restart) await cluster.RestartHostAsync(i, ct);
            var statuses = await StatusesAsync(cluster, ct);
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            while (statuses.Any(s => s != "ready") && DateTime.UtcNow < deadline)
            {
                await Task.Delay(250, ct);
                statuses = await StatusesAsync(cluster, ct);
            }
            if (statuses.All(s => s == "ready")) return;
            restart = Enumerable.Range(1, statuses.Count).Where(i => statuses[i - 1] != "ready").ToList();
            var message = $"hosts not ready: {string.Join(", ", statuses)}";
            if (attempt == 3) throw new TimeoutException(message);
            Console.WriteLine($"    recovery after h{victim}, try {attempt}: {message}; restarting h{string.Join(", h", restart)}");
        }
    }

    /// <summary>
    /// <c>GET /containers/{id}/json</c> (what <c>docker inspect</c> reads) of every moving container each 0.2 s: when they
    /// all first show running on another node (seconds from the fault), and every read's latency (ms).
    /// </summary>
    private static async Task<(double? Showed, List<double> LatenciesMs)> PollInspectAsync(NetnsCluster cluster, List<string> ids, string victim,
        Stopwatch sinceFault, CancellationToken ct)
    {
        var latencies = new List<double>();
        double? showed = null;
        try
        {
            while (!ct.IsCancellationRequested)
            {
                var tick = Task.Delay(200, ct);
                var all = true;
                foreach (var id in ids)
                {
                    var read = Stopwatch.StartNew();
                    try
                    {
                        using var response = await Http.GetAsync($"http://127.0.0.1:{cluster.GatewayDockerPort}/containers/{id}/json", ct);
                        var body = await response.Content.ReadAsStringAsync(ct);
                        latencies.Add(read.Elapsed.TotalMilliseconds);
                        using var json = JsonDocument.Parse(body);
                        var running = json.RootElement.TryGetProperty("State", out var state) && state.GetProperty("Running").GetBoolean();
                        var node = json.RootElement.TryGetProperty("Node", out var n) && n.ValueKind == JsonValueKind.Object ? n.GetProperty("Name").GetString() : null;
                        all &= running && node is not null && node != victim;
                    }
                    catch (Exception e) when (e is HttpRequestException or JsonException or KeyNotFoundException or InvalidOperationException)
                    {
                        latencies.Add(read.Elapsed.TotalMilliseconds);
                        all = false;
                    }
                }
                if (all && showed is null) showed = sinceFault.Elapsed.TotalSeconds;
                await tick;
            }
        }
        catch (OperationCanceledException)
        {
        }
        return (showed, latencies);
    }

    private static string Describe(RoundResult r) =>
        r.Failure is { } f && r.Moving == 0
            ? "FAILED: " + f
            : string.Create(CultureInfo.InvariantCulture, $"{r.Moving} container(s); running elsewhere {Seconds(r.Moved)}; inspect showed it {Seconds(r.InspectShowed)}; ") +
                string.Create(CultureInfo.InvariantCulture, $"{r.OverlapMoments} moment(s) a container ran twice (max runs {r.MaxRuns}); slowest of {r.Reads} API reads {r.SlowestReadMs:F0} ms; ") +
                string.Create(CultureInfo.InvariantCulture, $"at the end {r.LostAtEnd} lost, {r.TwiceAtEnd} running twice; {r.Samples} samples, longest gap {r.LongestSampleGapMs:F0} ms") +
                (r.Failure is null ? "" : $"; {r.Failure}");

    private static string Seconds(double? s) => s is { } v ? v.ToString("F2", CultureInfo.InvariantCulture) + " s" : "never";

    private void Report(Dictionary<string, List<RoundResult>> results)
    {
        Console.WriteLine();
        Console.WriteLine($"load average at end: {LoadAverage()}");
        Console.WriteLine();
        Console.WriteLine("| scenario | rounds | moved | to running elsewhere p50 / p99 / max (s) | moments a container ran twice (rounds with any) | max runs | docker inspect showed the move p50 / max (s) | slowest API read (ms) | lost / twice at the end |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var scenario in scenarios)
        {
            var rs = results[scenario.Name];
            var moved = rs.Where(r => r.Moved is not null).Select(r => r.Moved!.Value).ToList();
            var inspect = rs.Where(r => r.InspectShowed is not null).Select(r => r.InspectShowed!.Value).ToList();
            var failed = rs.Count(r => r.Failure is not null && r.Moving == 0);
            var inspectCell = inspect.Count == 0 ? "–" : string.Create(CultureInfo.InvariantCulture, $"{Percentile(inspect, 50):F2} / {inspect.Max():F2}");
            var maxRuns = rs.Count == 0 ? 0 : rs.Max(r => r.MaxRuns);
            var slowest = rs.Count == 0 ? 0 : rs.Max(r => r.SlowestReadMs);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {scenario.Name} | {rs.Count}{(failed > 0 ? $" ({failed} failed)" : "")} | {moved.Count}/{rs.Count} | {Triple(moved)} | {rs.Sum(r => r.OverlapMoments)} ({rs.Count(r => r.OverlapMoments > 0)}) | {maxRuns} | {inspectCell} ({inspect.Count}) | {slowest:F0} | {rs.Sum(r => r.LostAtEnd)} / {rs.Sum(r => r.TwiceAtEnd)} |"));
        }
        Console.WriteLine();
        Console.WriteLine("Faults: " + string.Join("; ", scenarios.Select(s => $"{s.Name}: {s.Fault}")));
        Console.WriteLine("Goals (issue 14): zero moments any container ran twice; p99 <= 10 s to running elsewhere; API reads <= 1 s; " +
            "an engine restart within the lease moves nothing. Anchors: Swarm ~15 s, Nomad 20-30 s, Kubernetes ~340 s.");
        foreach (var (name, rs) in results)
            foreach (var failure in rs.Where(r => r.Failure is not null).Select(r => r.Failure))
                Console.WriteLine($"FAILED round of {name}: {failure}");
        var allMoved = results.Values.SelectMany(x => x).Where(r => r.Moved is not null).Select(r => r.Moved!.Value).ToList();
        var p99 = allMoved.Count == 0 ? "-" : Percentile(allMoved, 99).ToString("F2", CultureInfo.InvariantCulture);
        var overlaps = results.Values.SelectMany(x => x).Sum(r => r.OverlapMoments);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"SUMMARY failover rounds={results.Values.Sum(x => x.Count)} overlap-moments={overlaps} p99={p99}s"));
    }

    private static string Triple(List<double> xs) => xs.Count == 0
        ? "–"
        : string.Create(CultureInfo.InvariantCulture, $"{Percentile(xs, 50):F2} / {Percentile(xs, 99):F2} / {xs.Max():F2}");

    /// <summary>Nearest-rank percentile.</summary>
    private static double Percentile(List<double> xs, int p)
    {
        var s = xs.Order().ToArray();
        return s[Math.Clamp((int)Math.Ceiling(p / 100.0 * s.Length) - 1, 0, s.Length - 1)];
    }

    private static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "?";

    private static string Commit()
    {
        try
        {
            var git = Process.Start(new ProcessStartInfo("git", ["rev-parse", "--short", "HEAD"]) { RedirectStandardOutput = true, RedirectStandardError = true });
            var text = git!.StandardOutput.ReadToEnd().Trim();
            git.WaitForExit();
            return text.Length > 0 ? text : "?";
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return "?";
        }
    }

    private static async Task AllReadyAsync(NetnsCluster cluster, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            var statuses = await StatusesAsync(cluster, ct);
            if (statuses.All(s => s == "ready")) return;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"hosts not ready: {string.Join(", ", statuses)}");
            await Task.Delay(250, ct);
        }
    }

    /// <summary>Each host's status in <c>/api/nodes</c>, in host order.</summary>
    private static async Task<List<string?>> StatusesAsync(NetnsCluster cluster, CancellationToken ct)
    {
        using var nodes = JsonDocument.Parse(await cluster.GetNativeAsync("/api/nodes", ct));
        return cluster.Hosts.Select(h => nodes.RootElement.EnumerateArray()
            .FirstOrDefault(n => n.GetProperty("name").GetString() == h.Name) is { ValueKind: JsonValueKind.Object } row ? row.GetProperty("status").GetString() : null).ToList();
    }

    public async ValueTask DisposeAsync()
    {
        if (_cluster is null) return;
        var id = _cluster.Id;
        await _cluster.DisposeAsync();
        var leftovers = await NetnsCluster.LeftoversAsync(id);
        if (leftovers.Count > 0) Console.Error.WriteLine($"LEFT BEHIND: {string.Join("; ", leftovers)}");
    }
}
