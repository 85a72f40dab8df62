// Failover time: a host of a 3-host cluster (network namespaces on this machine, NetnsCluster) is killed with
// SIGKILL; how long until every container it ran is running again on the survivors. See bench/README.md.
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Flotilla.Bench.Common;
using Flotilla.Tests.MultiHost;
using static Flotilla.Bench.Common.BenchStats;

namespace Flotilla.Bench.Failover;

public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        var options = BenchProgram.Parse(args,
            "usage: Flotilla.Bench.Failover [--iterations N (kill rounds, default 10)] [--quick (N=3)] [--hosts H (default 3)] " +
            "[--containers C (per round, default 6)] [--stable-after 1s] [--heartbeat-pause 1500ms] (default: the CLI's) [--keep (keep every process's log)]   (needs root)",
            iterations: 10, quickIterations: 3, sizeMb: 1, "--hosts", "--containers", "--stable-after", "--heartbeat-pause");
        if (options is null) return Environment.ExitCode;
        var hosts = options.Values.TryGetValue("--hosts", out var h) ? int.Parse(h, CultureInfo.InvariantCulture) : 3;
        var containers = options.Values.TryGetValue("--containers", out var c) ? int.Parse(c, CultureInfo.InvariantCulture) : 6;
        if (hosts < 2 || containers < 1)
        {
            Console.Error.WriteLine("--hosts must be >= 2 and --containers >= 1");
            return 2;
        }
        if (NetnsCluster.UnavailableReason() is { } reason)
        {
            Console.Error.WriteLine($"cannot run: {reason}");
            return 2;
        }
        var stableAfter = options.Values.GetValueOrDefault("--stable-after");
        var heartbeatPause = options.Values.GetValueOrDefault("--heartbeat-pause");
        return await BenchProgram.RunAsync("ffo", options.Keep,
            root => new FailoverBench(root, options.Iterations, hosts, containers, stableAfter, heartbeatPause, options.Keep),
            (bench, ct) => bench.RunAsync(ct));
    }
}

internal sealed class FailoverBench(string root, int rounds, int hosts, int containersPerRound, string? stableAfter, string? heartbeatPause, bool keep) : IAsyncDisposable
{
    private const string Image = "flt-bench/busybox:1";
    private static readonly TimeSpan RoundTimeout = TimeSpan.FromSeconds(120);
    private NetnsCluster? _cluster;

    public async Task RunAsync(CancellationToken ct)
    {
        Console.WriteLine($"Flotilla failover benchmark: {hosts} hosts (network namespaces) + gateway, {containersPerRound} containers " +
            $"(--restart always) per round, {rounds} kill -9 round(s), --stable-after {stableAfter ?? "(default)"}, --heartbeat-pause {heartbeatPause ?? "(default)"}, {Environment.ProcessorCount} cores");
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

        var failover = new List<double>();
        var detection = new List<double>();
        var oldestKills = new List<double>();
        var failures = new List<string>();
        // Join order: the oldest node member hosts the singletons (scheduler, shard coordinators); a restarted victim
        // rejoins as the youngest.
        var joinOrder = Enumerable.Range(1, hosts).ToList();
        for (var round = 1; round <= rounds; round++)
        {
            // Any host may die: the victims go round the join order's positions (oldest, next, ..., youngest), so one
            // kill in N also moves the singletons, as with a random crash.
            var victim = joinOrder[(round - 1) % hosts];
            var victimName = cluster.Host(victim).Name;
            var victimWasOldest = joinOrder[0] == victim;
            await AllReadyAsync(cluster, ct);
            var ids = new List<string>();
            for (var i = 0; i < containersPerRound; i++)
            {
                var run = await cluster.DockerAsync(ct, "run", "-d", "--restart", "always", "--name", $"r{round}-{i}", Image, "sleep", "3600");
                if (run.ExitCode != 0) throw new InvalidOperationException($"docker run: {run}");
                ids.Add(run.Stdout.Trim());
            }
            var before = await PlacementAsync(cluster, ct);
            var moving = ids.Where(id => before.TryGetValue(id, out var p) && p.Node == victimName).ToList();
            if (moving.Count == 0) throw new InvalidOperationException($"round {round}: nothing placed on {victimName}");

            var killedAt = DateTimeOffset.UtcNow;
            var clock = Stopwatch.StartNew();
            await cluster.KillHostAsync(victim, ct);
            double? down = null;
            double? moved = null;
            while (clock.Elapsed < RoundTimeout && moved is null)
            {
                if (down is null && await StatusAsync(cluster, victimName, ct) == "down") down = clock.Elapsed.TotalSeconds;
                var now = await PlacementAsync(cluster, ct);
                if (moving.All(id => now.TryGetValue(id, out var p) && p.State == "running" && p.Node != victimName && p.Node != ""))
                    moved = clock.Elapsed.TotalSeconds;
                else
                    await Task.Delay(100, ct);
            }
            down ??= await StatusAsync(cluster, victimName, ct) == "down" ? clock.Elapsed.TotalSeconds : null;

            // Check against the hosts themselves: every container runs exactly once (runc in each survivor).
            var running = new List<string>();
            foreach (var host in cluster.Hosts.Where(x => x.IsRunning)) running.AddRange(await host.RunningContainerIdsAsync());
            var notOnce = ids.Where(id => running.Count(r => r == id) != 1).ToList();

            if (moved is { } t && notOnce.Count == 0)
            {
                failover.Add(t);
                if (victimWasOldest) oldestKills.Add(t);
                if (down is { } d) detection.Add(d);
                Console.WriteLine($"[round {round}/{rounds}] kill -9 {victimName}{(victimWasOldest ? " (oldest: singletons move too)" : "")}: " +
                    $"{moving.Count} container(s) running again elsewhere in {t:F2} s " +
                    $"(recorded down at {(down is { } dd ? dd.ToString("F2", CultureInfo.InvariantCulture) : "?")} s; killed at {killedAt:HH:mm:ss.fff}Z)");
                Console.WriteLine($"    store timeline: {await TimelineAsync(cluster, victimName, moving, killedAt, ct)}");
            }
            else
            {
                var why = moved is null ? $"not all running elsewhere after {RoundTimeout.TotalSeconds:F0} s" : $"not running exactly once: {string.Join(", ", notOnce.Select(x => x[..12]))}";
                failures.Add($"round {round} ({victimName}): {why}");
                Console.WriteLine($"[round {round}/{rounds}] kill -9 {victimName}: FAILED, {why}");
            }

            await cluster.DockerAsync(ct, ["rm", "-f", .. ids]);
            await cluster.RestartHostAsync(victim, ct);
            joinOrder.Remove(victim);
            joinOrder.Add(victim);
        }

        Report(failover, detection, oldestKills, failures);
        if (failures.Count > 0) throw new InvalidOperationException($"{failures.Count} round(s) failed: {string.Join("; ", failures)}");
    }

    private void Report(List<double> failover, List<double> detection, List<double> oldestKills, List<string> failures)
    {
        Console.WriteLine();
        Console.WriteLine($"failover: kill -9 of a host -> all its containers running on the survivors ({failover.Count} round(s), seconds)");
        if (failover.Count == 0)
        {
            Console.WriteLine("  no successful round");
            return;
        }
        Console.WriteLine($"  p50 {Percentile(failover, 50):F2}   p99 {Percentile(failover, 99):F2}   max {failover.Max():F2}   samples {Samples(failover)}");
        if (detection.Count > 0)
            Console.WriteLine($"  of which detection (kill -> node recorded down): p50 {Percentile(detection, 50):F2}   max {detection.Max():F2}");
        if (oldestKills.Count > 0)
            Console.WriteLine($"  kills of the oldest host (scheduler and shard coordinators move too): p50 {Percentile(oldestKills, 50):F2}   max {oldestKills.Max():F2}   samples {Samples(oldestKills)}");
        Console.WriteLine("anchors (defaults, host crash -> workload elsewhere):");
        Console.WriteLine("  Kubernetes  ~340 s (node-monitor-grace-period 40 s + not-ready toleration 300 s)");
        Console.WriteLine("  Nomad       20-30 s");
        Console.WriteLine("  Swarm       ~15 s");
        var p50 = Percentile(failover, 50);
        var p99 = Percentile(failover, 99);
        var met = p50 <= 5 && p99 <= 10;
        Console.WriteLine($"goal: p50 <= 5 s, p99 <= 10 s -> {(met ? "MET" : "NOT MET")} (p50 {p50:F2} s, p99 {p99:F2} s)");
        Console.WriteLine($"load average at end: {LoadAverage()}");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"SUMMARY failover hosts={hosts} containers={containersPerRound} stable-after={stableAfter ?? "default"} heartbeat-pause={heartbeatPause ?? "default"} n={failover.Count} failed={failures.Count} p50={p50:F2}s p99={p99:F2}s max={failover.Max():F2}s"));
    }

    /// <summary>Nearest-rank percentile.</summary>
    private static double Percentile(List<double> xs, int p)
    {
        var s = xs.Order().ToArray();
        return s[Math.Clamp((int)Math.Ceiling(p / 100.0 * s.Length) - 1, 0, s.Length - 1)];
    }

    private static async Task AllReadyAsync(NetnsCluster cluster, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(90);
        while (true)
        {
            var statuses = await Task.WhenAll(cluster.Hosts.Select(h => StatusAsync(cluster, h.Name, ct)));
            if (statuses.All(s => s == "ready")) return;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"hosts not ready: {string.Join(", ", statuses)}");
            await Task.Delay(250, ct);
        }
    }

    private static async Task<string?> StatusAsync(NetnsCluster cluster, string node, CancellationToken ct)
    {
        using var nodes = JsonDocument.Parse(await cluster.GetNativeAsync("/api/nodes", ct));
        return nodes.RootElement.EnumerateArray().FirstOrDefault(n => n.GetProperty("name").GetString() == node) is { ValueKind: JsonValueKind.Object } row
            ? row.GetProperty("status").GetString()
            : null;
    }

    /// <summary>
    /// Where the time went, from the events' own (database) timestamps: the node's departure, the moves, the starts.
    /// </summary>
    private static async Task<string> TimelineAsync(NetnsCluster cluster, string victim, List<string> moving, DateTimeOffset killedAt, CancellationToken ct)
    {
        var since = Uri.EscapeDataString(killedAt.AddSeconds(-1).ToString("O", CultureInfo.InvariantCulture));
        using var page = JsonDocument.Parse(await cluster.GetNativeAsync($"/api/audit?since={since}&limit=1000", ct));
        var ids = moving.ToHashSet();
        double? left = null;
        var rescheduled = new List<double>();
        var started = new List<double>();
        foreach (var e in page.RootElement.GetProperty("entries").EnumerateArray())
        {
            var at = (e.GetProperty("time").GetDateTimeOffset() - killedAt).TotalSeconds;
            var type = e.GetProperty("type").GetString();
            var id = e.GetProperty("id").GetString() ?? "";
            if (type == "node_left" && id == victim) left ??= at;
            else if (type == "container_rescheduled" && ids.Contains(id)) rescheduled.Add(at);
            else if (type == "container_started" && ids.Contains(id) && at > 0) started.Add(at);
        }
        static string Span(List<double> xs) => xs.Count == 0 ? "?" : string.Create(CultureInfo.InvariantCulture, $"{xs.Min():F2}-{xs.Max():F2}");
        return string.Create(CultureInfo.InvariantCulture,
            $"node_left {(left is { } l ? l.ToString("F2", CultureInfo.InvariantCulture) : "?")} s, rescheduled {Span(rescheduled)} s, started {Span(started)} s");
    }

    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(30) };

    /// <summary>Container id → (node, state) from the gateway's container list.</summary>
    private static async Task<Dictionary<string, (string Node, string State)>> PlacementAsync(NetnsCluster cluster, CancellationToken ct)
    {
        using var list = JsonDocument.Parse(await Http.GetStringAsync($"http://127.0.0.1:{cluster.GatewayDockerPort}/containers/json?all=1", ct));
        return list.RootElement.EnumerateArray().ToDictionary(c => c.GetProperty("Id").GetString()!,
            c => (c.TryGetProperty("Node", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString()! : "", c.GetProperty("State").GetString()!));
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
