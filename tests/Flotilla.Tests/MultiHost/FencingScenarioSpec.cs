using System.Diagnostics;
using Flotilla.Tests.Support;
using Xunit;
using Xunit.Abstractions;
using static Flotilla.Tests.MultiHost.ClusterScenarioSpec;

namespace Flotilla.Tests.MultiHost;

/// <summary>
/// Never twice (issue 14): failures judged by the hosts' ground truth, a <see cref="RunSampler"/> counting every
/// container's runs on every host each 0.1 s for the whole transition. The <c>Harness_</c> specs prove the harness's
/// fault primitives and that the sampler can fail; the others state the issue's goal (they failed before hosts fenced
/// their containers by lease: 138 moments of a container running twice after an engine crash).
/// </summary>
[Collection(MultiHostCollection.Name)]
public sealed class FencingScenarioSpec(ThreeHostCluster fixture, ITestOutputHelper output) : IClassFixture<ThreeHostCluster>
{
    /// <summary>Issue 14's goal: every container of a failed host running elsewhere within 10 s (p99).</summary>
    private static readonly TimeSpan Goal = TimeSpan.FromSeconds(10);

    [SkippableFact]
    public async Task Harness_an_engine_kill_leaves_conmon_and_the_containers_running_and_a_new_engine_adopts_them()
    {
        var cluster = fixture.Require();
        await Reported(cluster, async () =>
        {
            await AllReadyAsync(cluster);
            await fixture.ImportImageAsync();
            // No restart policy: nothing moves them while the engine is away, whatever the failover does.
            var ids = new List<string>();
            for (var i = 0; i < 2; i++) ids.Add(await RunOneAsync(cluster, "-e", "constraint:node==h2"));
            await using var sampler = cluster.StartSampler();
            try
            {
                Assert.NotNull(await sampler.WaitForAsync(s => ids.All(id => s.Hosts.GetValueOrDefault(id)?.SequenceEqual([2]) == true), TimeSpan.FromSeconds(10)));
                var host = cluster.Host(2);
                await cluster.KillEngineAsync(2);
                Assert.False(host.EngineRunning, "the engine is gone");
                Assert.True(host.IsRunning, "the host (its init) still runs");
                await Task.Delay(TimeSpan.FromSeconds(1.5));
                var after = sampler.Latest!;
                Assert.All(ids, id => Assert.Equal([2], after.Hosts.GetValueOrDefault(id) ?? []));
                var conmons = host.ProcessIds().Count(pid => Comm(pid) == "conmon");
                Assert.True(conmons >= ids.Count, $"conmon of each container still runs ({conmons})");
                var real = await host.RunningContainerIdsAsync();
                Assert.All(ids, id => Assert.Contains(id, real));

                await cluster.StartEngineAsync(2);
                await AllReadyAsync(cluster);
                await Task.Delay(TimeSpan.FromSeconds(1));
                // The harness's part is that the processes lived on while the engine was away (above). What happens on
                // its return is the product's: an engine back within its lease (~3 s) re-adopts them; a slower start (a
                // loaded machine) finds them fenced by the host's watchdog. Either way, never on two hosts and, with
                // restart policy "no", never elsewhere.
                foreach (var id in ids)
                    output.WriteLine($"{id[..12]} recorded as {(await cluster.DockerAsync("inspect", "-f", "{{.State.Status}}", id)).Stdout.Trim()}");
                var report = await sampler.StopAsync();
                output.WriteLine(report.ToString());
                Assert.True(report.MaxRuns <= 1, report.ToString());
                Assert.Empty(report.FirstElsewhere);
                Assert.All(ids, id => Assert.True((sampler.Latest!.Hosts.GetValueOrDefault(id) ?? []) is [] or [2],
                    $"{id[..12]} runs on h2 (re-adopted) or nowhere (fenced)"));
            }
            finally
            {
                await RemoveAsync(cluster, ids);
            }
        });
    }

    [SkippableFact]
    public async Task Harness_a_silent_death_leaves_no_process_of_the_host()
    {
        var cluster = fixture.Require();
        await Reported(cluster, async () =>
        {
            await AllReadyAsync(cluster);
            await fixture.ImportImageAsync();
            var ids = new List<string>();
            for (var i = 0; i < 2; i++) ids.Add(await RunOneAsync(cluster, "-e", "constraint:node==h3"));
            await using var sampler = cluster.StartSampler();
            try
            {
                Assert.NotNull(await sampler.WaitForAsync(s => ids.All(id => s.Runs(id) == 1), TimeSpan.FromSeconds(10)));
                var host = cluster.Host(3);
                Assert.NotEmpty(host.ProcessIds());
                await cluster.SilentDeathAsync(3);
                Assert.False(await host.ReachableAsync(TimeSpan.FromSeconds(1)), "h3's link is down");
                Assert.False(host.IsRunning);
                Assert.Empty(host.ProcessIds());
                Assert.Equal("", (await Command.RunAsync("ip", ["netns", "pids", host.Namespace], CancellationToken.None)).Stdout.Trim());
                Assert.NotNull(await sampler.WaitForAsync(s => s.On(3).Count == 0, TimeSpan.FromSeconds(2)));
            }
            finally
            {
                await cluster.HealAsync(3);
                await cluster.RestartHostAsync(3);
                await AllReadyAsync(cluster);
                await RemoveAsync(cluster, ids);
            }
        });
    }

    [SkippableFact]
    public async Task Harness_the_sampler_sees_a_container_running_on_two_hosts()
    {
        var cluster = fixture.Require();
        await Reported(cluster, async () =>
        {
            await AllReadyAsync(cluster);
            await fixture.ImportImageAsync();
            var id = await RunOneAsync(cluster, "-e", "constraint:node==h1");
            await using var sampler = cluster.StartSampler();
            // A second "run" of the container: PID 1 of a PID namespace of its own, moved into the container's cgroup under h3.
            var cgroup = $"/sys/fs/cgroup/pids{cluster.Host(3).CgroupParent}/{id}";
            using var fake = Process.Start(new ProcessStartInfo("unshare", ["--pid", "--fork", "--kill-child", "sleep", "60"]))!;
            try
            {
                Assert.NotNull(await sampler.WaitForAsync(s => s.Runs(id) == 1 && s.On(1).Contains(id), TimeSpan.FromSeconds(10)));
                var sleep = 0;
                Assert.True(await Eventually.TrueAsync(() =>
                    Task.FromResult(int.TryParse(File.ReadAllText($"/proc/{fake.Id}/task/{fake.Id}/children").Trim(), out sleep)), TimeSpan.FromSeconds(5)));
                Directory.CreateDirectory(cgroup);
                await File.WriteAllTextAsync(Path.Combine(cgroup, "cgroup.procs"), sleep.ToString(System.Globalization.CultureInfo.InvariantCulture));

                var twice = await sampler.WaitForAsync(s => s.Runs(id) == 2, TimeSpan.FromSeconds(3));
                Assert.NotNull(twice);
                Assert.Equal([1, 3], twice.Hosts[id]);
                var report = sampler.Report();
                output.WriteLine(report.ToString());
                Assert.Equal(2, report.MaxRuns);
                Assert.Contains(report.Overlaps, o => o.Container == id && o.Hosts.SequenceEqual([1, 3]));
                Assert.Equal(1, report.OriginalHost[id]);
                Assert.Equal(3, report.FirstElsewhere[id].To);
            }
            finally
            {
                fake.Kill(entireProcessTree: true);
                await fake.WaitForExitAsync();
                await Eventually.TrueAsync(() => Task.FromResult(!Directory.Exists(cgroup) || Rmdir(cgroup)), TimeSpan.FromSeconds(5));
                await RemoveAsync(cluster, [id]);
            }
        });
    }

    [SkippableFact]
    public async Task Harness_a_cluster_only_partition_keeps_postgresql_reachable_and_nothing_else()
    {
        var cluster = fixture.Require();
        await Reported(cluster, async () =>
        {
            await AllReadyAsync(cluster);
            try
            {
                await cluster.PartitionClusterOnlyAsync(3);
                Assert.True(await ConnectsFromAsync(cluster, 3, cluster.BridgeAddress, 5432), "h3 reaches PostgreSQL");
                Assert.False(await ConnectsFromAsync(cluster, 3, cluster.Host(1).Address, 4053), "h3 cannot reach h1's cluster port");
                Assert.False(await cluster.Host(3).ReachableAsync(TimeSpan.FromSeconds(1)), "the gateway cannot reach h3's node API");
                await cluster.HealAsync(3);
                Assert.True(await cluster.Host(3).ReachableAsync(TimeSpan.FromSeconds(2)), "h3's node API reachable after healing");
            }
            finally
            {
                await cluster.HealAsync(3);
                await SettleAsync(cluster, 3);
            }
        });
    }

    [SkippableFact]
    public async Task Harness_a_pause_stops_every_process_of_the_host_and_resumes_them()
    {
        var cluster = fixture.Require();
        await Reported(cluster, async () =>
        {
            await AllReadyAsync(cluster);
            try
            {
                var host = cluster.Host(3);
                var pause = cluster.PauseHostAsync(3, TimeSpan.FromSeconds(1));
                await Task.Delay(TimeSpan.FromMilliseconds(400));
                var states = host.ProcessIds().Where(pid => pid != host.InitPid).Select(pid => (Pid: pid, State: State(pid))).ToList();
                await pause;
                Assert.NotEmpty(states);
                Assert.All(states, s => Assert.True(s.State is 'T' or '\0', $"process {s.Pid} ({Comm(s.Pid)}) state {s.State} while paused"));
                Assert.All(host.ProcessIds().Where(pid => pid != host.InitPid), pid => Assert.NotEqual('T', State(pid)));
                // The harness's wrappers were resumed too: the engine's exit is still seen (a stopped nsenter would hide it).
                await cluster.KillEngineAsync(3);
                Assert.False(host.EngineRunning);
                await cluster.StartEngineAsync(3);
            }
            finally
            {
                await SettleAsync(cluster, 3);
            }
        });
    }

    /// <summary>
    /// After a short fault of host <paramref name="i"/>: long enough for the failure detector to have acted (a second host
    /// unreachable at the same time could make the resolver down the gateway's side), then host i restarted if it was downed.
    /// </summary>
    private static async Task SettleAsync(NetnsCluster cluster, int i)
    {
        await Task.Delay(TimeSpan.FromSeconds(6));
        var name = cluster.Host(i).Name;
        if (!cluster.Host(i).EngineRunning ||
            !await Eventually.TrueAsync(async () => (await NodesAsync(cluster))[name].Status == "ready", TimeSpan.FromSeconds(10)))
            await cluster.RestartHostAsync(i);
        await AllReadyAsync(cluster);
    }

    [SkippableFact]
    public async Task An_engine_crash_never_runs_a_container_twice_and_its_return_neither_duplicates_nor_loses_any()
    {
        var cluster = fixture.Require();
        await Reported(cluster, async () =>
        {
            await AllReadyAsync(cluster);
            await fixture.ImportImageAsync();
            var ids = await RunAsync(cluster, 6, "crash", "--restart", "always");
            await using var sampler = cluster.StartSampler();
            try
            {
                var start = await sampler.WaitForAsync(s => ids.All(id => s.Runs(id) == 1), TimeSpan.FromSeconds(15));
                Assert.NotNull(start);
                var victims = start.On(2).Intersect(ids).ToList();
                Assert.True(victims.Count > 0, "some container on h2");

                var fault = sampler.Elapsed;
                await cluster.KillEngineAsync(2);
                var moved = await sampler.WaitForAsync(s => victims.All(id => s.Hosts.GetValueOrDefault(id)?.Any(h => h != 2) == true), TimeSpan.FromSeconds(40));
                var during = sampler.Report();
                output.WriteLine($"engine crash of h2: {(moved is null ? "not moved" : $"moved after {(moved.At - fault).TotalSeconds:F2} s")}; {during}");

                await cluster.StartEngineAsync(2);
                await AllReadyAsync(cluster);
                await Task.Delay(TimeSpan.FromSeconds(5)); // the returning engine's re-adoption and the scheduler's next pass
                var report = await sampler.StopAsync();
                output.WriteLine($"after the engine's return: {report}");

                Assert.True(report.MaxRuns <= 1, $"never more than one run per container: {report}");
                Assert.True(moved is not null && moved.At - fault <= Goal,
                    $"h2's containers running elsewhere within {Goal.TotalSeconds} s: {(moved is null ? "never" : $"{(moved.At - fault).TotalSeconds:F2} s")}");
                var last = sampler.Latest!;
                Assert.All(ids, id => Assert.Equal(1, last.Runs(id)));
                var running = new List<string>();
                foreach (var host in cluster.Hosts) running.AddRange(await host.RunningContainerIdsAsync());
                Assert.All(ids, id => Assert.Equal(1, running.Count(r => r == id)));
            }
            finally
            {
                // A new h2 (every process of it gone, duplicates included), then nothing of this spec.
                await cluster.RestartHostAsync(2);
                await AllReadyAsync(cluster);
                await RemoveAsync(cluster, ids);
            }
        });
    }

    [SkippableFact]
    public async Task An_engine_restart_within_the_lease_moves_nothing()
    {
        var cluster = fixture.Require();
        await Reported(cluster, async () =>
        {
            await AllReadyAsync(cluster);
            await fixture.ImportImageAsync();
            var ids = await RunAsync(cluster, 3, "within", "--restart", "always");
            await using var sampler = cluster.StartSampler();
            try
            {
                var start = await sampler.WaitForAsync(s => ids.All(id => s.Runs(id) == 1), TimeSpan.FromSeconds(15));
                Assert.NotNull(start);
                var restart = Stopwatch.StartNew();
                await cluster.KillEngineAsync(3);
                await Task.Delay(TimeSpan.FromSeconds(1));
                await cluster.StartEngineAsync(3);
                output.WriteLine($"h3's engine killed and up again in {restart.Elapsed.TotalSeconds:F2} s");
                await AllReadyAsync(cluster);
                await Task.Delay(TimeSpan.FromSeconds(6));
                var report = await sampler.StopAsync();
                output.WriteLine(report.ToString());
                Assert.True(report.MaxRuns <= 1, $"never more than one run per container: {report}");
                Assert.True(report.FirstElsewhere.Count == 0, $"nothing moved: {string.Join(", ", report.FirstElsewhere)}");
                Assert.All(ids, id => Assert.Equal(start.Hosts[id], sampler.Latest!.Hosts.GetValueOrDefault(id)));
            }
            finally
            {
                await cluster.RestartHostAsync(3);
                await AllReadyAsync(cluster);
                await RemoveAsync(cluster, ids);
            }
        });
    }

    /// <summary>Whether a TCP connection from inside host <paramref name="i"/> to <paramref name="address"/>:<paramref name="port"/> opens within a second.</summary>
    private static async Task<bool> ConnectsFromAsync(NetnsCluster cluster, int i, string address, int port) =>
        (await cluster.Host(i).ExecAsync("timeout", "1", "bash", "-c", $"exec 3<>/dev/tcp/{address}/{port}")).ExitCode == 0;

    private static string Comm(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/comm").Trim();
        }
        catch (IOException)
        {
            return "";
        }
    }

    private static char State(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[stat.LastIndexOf(')') + 2];
        }
        catch (IOException)
        {
            return '\0';
        }
    }

    private static bool Rmdir(string path)
    {
        try
        {
            Directory.Delete(path);
            return true;
        }
        catch (IOException)
        {
            return false;
        }
    }

    private async Task Reported(NetnsCluster cluster, Func<Task> body)
    {
        foreach (var line in fixture.TakeTrace()) output.WriteLine(line);
        var clock = Stopwatch.StartNew();
        try
        {
            await body();
            output.WriteLine($"spec took {clock.Elapsed.TotalSeconds:F1} s");
        }
        catch (Exception e) when (e is not SkipException)
        {
            output.WriteLine(cluster.Logs());
            throw;
        }
    }
}
