using System.Diagnostics;
using System.Text.Json;
using Flotilla.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Flotilla.Tests.MultiHost;

/// <summary>The multi-host specs run one at a time: each cluster takes both cores while it starts.</summary>
[CollectionDefinition(Name)]
public sealed class MultiHostCollection
{
    public const string Name = "multi-host";
}

/// <summary>
/// Three hosts (labels zone=a/b/c) and a gateway, started once for the class (<see cref="NetnsCluster"/>). A spec that
/// crashes or cuts off a host brings it back before it returns, so the next one starts from three ready hosts.
/// </summary>
public sealed class ThreeHostCluster : IAsyncLifetime
{
    public const string Image = "flt-test/busybox:1";
    public static readonly string[] Zones = ["a", "b", "c"];

    private readonly List<string> _trace = [];
    public NetnsCluster? Cluster { get; private set; }
    public string? Unavailable { get; } = NetnsCluster.UnavailableReason();
    public string? StartFailure { get; private set; }
    private bool _imageImported;

    public async Task InitializeAsync()
    {
        if (Unavailable is not null) return;
        try
        {
            Cluster = await NetnsCluster.StartAsync(new NetnsClusterOptions
            {
                Hosts = 3,
                Labels = i => [$"zone={Zones[i - 1]}"],
                Trace = line => { lock (_trace) _trace.Add(line); },
                // FLOTILLA_MULTIHOST_LOGS=DIR keeps every process's full log there (the failure output has the tails).
                KeepLogsIn = Environment.GetEnvironmentVariable("FLOTILLA_MULTIHOST_LOGS") is { Length: > 0 } logs ? logs : null,
            });
        }
        catch (Exception e)
        {
            StartFailure = $"{e.Message}\n{string.Join('\n', _trace)}";
        }
    }

    /// <summary>Setup lines not yet shown (timings of the start), for the first spec's output.</summary>
    public IReadOnlyList<string> TakeTrace()
    {
        lock (_trace)
        {
            var lines = _trace.ToList();
            _trace.Clear();
            return lines;
        }
    }

    public NetnsCluster Require()
    {
        Skip.If(Unavailable is not null, Unavailable);
        Assert.True(Cluster is not null, "cluster did not start: " + StartFailure);
        return Cluster!;
    }

    /// <summary>The busybox image on the gateway and every host (these specs are about placement, not image transfer).</summary>
    public async Task ImportImageAsync()
    {
        if (_imageImported) return;
        await Cluster!.ImportBusyboxEverywhereAsync(Image);
        _imageImported = true;
    }

    public async Task DisposeAsync()
    {
        if (Cluster is null) return;
        await Cluster.DisposeAsync();
        // A leak is a failure (xunit reports it as the class's cleanup failure): namespaces, links, mounts,
        // processes, the temp dir, the cgroups of the containers.
        if (Cluster.Leftovers.Count > 0) throw new InvalidOperationException("the cluster left: " + string.Join("; ", Cluster.Leftovers));
    }
}

[Collection(MultiHostCollection.Name)]
public sealed class ClusterScenarioSpec(ThreeHostCluster fixture, ITestOutputHelper output) : IClassFixture<ThreeHostCluster>
{
    private static readonly TimeSpan Detection = TimeSpan.FromSeconds(45);
    private static readonly TimeSpan Failover = TimeSpan.FromSeconds(60);

    [SkippableFact]
    public async Task Every_host_is_listed_by_the_gateway_and_runs_its_node_under_its_own_init_seeing_only_its_own_files()
    {
        var cluster = fixture.Require();
        await Reported(cluster, async () =>
        {
            await AllReadyAsync(cluster);
            var info = await cluster.DockerAsync("info", "--format", "{{.Name}} {{.ServerVersion}}");
            Assert.True(info.ExitCode == 0, info.ToString());
            using (var http = new HttpClient())
            {
                var raw = JsonDocument.Parse(await http.GetStringAsync($"http://127.0.0.1:{cluster.GatewayDockerPort}/info")).RootElement;
                var listed = raw.GetProperty("Nodes").EnumerateArray().Select(n => n.GetProperty("Name").GetString()).ToList();
                foreach (var host in cluster.Hosts) Assert.Contains(host.Name, listed);
            }
            var nodes = JsonDocument.Parse(await cluster.GetNativeAsync("/api/nodes")).RootElement.EnumerateArray().ToList();
            foreach (var host in cluster.Hosts)
            {
                var row = nodes.Single(n => n.GetProperty("name").GetString() == host.Name);
                Assert.Equal($"zone={ThreeHostCluster.Zones[host.Index - 1]}", string.Join(",", row.GetProperty("labels").EnumerateObject().Select(l => $"{l.Name}={l.Value.GetString()}")));
                Assert.Contains(host.Address, row.GetProperty("address").GetString());
                // Each host is its own PID namespace with its own /proc: PID 1 there is its init (tini), and its engine runs
                // in that namespace, not as its PID 1 (so an engine crash leaves the containers running).
                Assert.Equal("tini", (await host.ExecAsync("cat", "/proc/1/comm")).Stdout.Trim());
                var engine = host.EnginePid ?? throw new InvalidOperationException($"{host.Name}: no engine");
                Assert.Contains("flotilla.dll node --name " + host.Name + " ", File.ReadAllText($"/proc/{engine}/cmdline").Replace('\0', ' '));
                Assert.Equal(new FileInfo($"/proc/{host.InitPid}/ns/pid").LinkTarget, new FileInfo($"/proc/{engine}/ns/pid").LinkTarget);
                // Each host sees only its own files: the other hosts', the gateway's and the CA's directories are hidden.
                var listing = await host.ExecAsync("ls", "-A", cluster.Root);
                Assert.Equal(host.Name, listing.Stdout.Trim());
                Assert.True(Directory.Exists(Path.Combine(cluster.Root, "gw")), "the root namespace sees the gateway's files");
            }
        });
    }

    [SkippableFact]
    public async Task Nine_containers_spread_three_per_host()
    {
        var cluster = fixture.Require();
        await Reported(cluster, async () =>
        {
            await AllReadyAsync(cluster);
            await fixture.ImportImageAsync();
            await NoContainersAsync(cluster);
            var ids = await RunAsync(cluster, 9, "spread");
            try
            {
                var placed = await PlacementAsync(cluster, ids);
                output.WriteLine(string.Join(", ", placed.Select(p => $"{p.Key[..12]}@{p.Value.Node}")));
                foreach (var host in cluster.Hosts)
                {
                    var here = placed.Values.Count(p => p.Node == host.Name);
                    Assert.True(here == 3, $"{host.Name} runs {here} of 9 (spread: 3 each): {Describe(placed)}");
                    var real = await host.RunningContainerIdsAsync();
                    Assert.Equal(placed.Where(p => p.Value.Node == host.Name).Select(p => p.Key).Order(), real.Intersect(ids).Order());
                }

                // The gateway forwards exec (a hijacked stream) and export (plain HTTP) to the container's host; the host
                // records the gateway's client (the CLI, on 127.0.0.1), not the gateway's bridge address.
                var target = ids[0];
                Assert.Equal(0, (await cluster.DockerAsync("exec", target, "true")).ExitCode);
                var tar = Path.Combine(Path.GetTempPath(), $"flotilla-export-{Guid.NewGuid():N}.tar");
                try
                {
                    var export = await cluster.DockerAsync("export", "-o", tar, target);
                    Assert.True(export.ExitCode == 0, $"docker export: {export}");
                }
                finally
                {
                    File.Delete(tar);
                }
                using var audit = System.Text.Json.JsonDocument.Parse(
                    await cluster.GetNativeAsync($"/api/audit?container={target}&type=ContainerExecStarted&type=ContainerExported&limit=10"));
                var users = audit.RootElement.GetProperty("entries").EnumerateArray()
                    .Select(e => (Type: e.GetProperty("type").GetString(), User: e.GetProperty("user").GetString())).ToList();
                output.WriteLine(string.Join(", ", users));
                Assert.Contains(("container_exec_started", "anonymous@127.0.0.1"), users);
                Assert.Contains(("container_exported", "anonymous@127.0.0.1"), users);
            }
            finally
            {
                await RemoveAsync(cluster, ids);
            }
        });
    }

    [SkippableFact]
    public async Task The_containers_of_a_host_killed_with_sigkill_run_again_on_the_survivors()
    {
        var cluster = fixture.Require();
        await Reported(cluster, async () =>
        {
            await AllReadyAsync(cluster);
            await fixture.ImportImageAsync();
            var ids = await RunAsync(cluster, 6, "failover", "--restart", "always");
            try
            {
                var before = await PlacementAsync(cluster, ids);
                var victims = before.Where(p => p.Value.Node == "h2").Select(p => p.Key).ToList();
                Assert.True(victims.Count > 0, $"some container on h2: {Describe(before)}");

                var clock = Stopwatch.StartNew();
                await cluster.KillHostAsync(2); // returns once every process of h2, containers included, is gone
                Assert.True(await Eventually.TrueAsync(async () => (await NodesAsync(cluster))["h2"].Status == "down", Detection),
                    $"h2 recorded down by the survivors: {Describe(await NodesAsync(cluster))}");
                output.WriteLine($"kill -9 of h2 -> recorded down in {clock.Elapsed.TotalSeconds:F2} s");
                Assert.True(await Eventually.TrueAsync(async () =>
                {
                    var now = await PlacementAsync(cluster, victims);
                    return now.Values.All(p => p.State == "running" && p.Node is "h1" or "h3");
                }, Failover), $"h2's containers running on h1/h3: {Describe(await PlacementAsync(cluster, ids))}");
                output.WriteLine($"kill -9 of h2 -> its {victims.Count} container(s) running again on the survivors in {clock.Elapsed.TotalSeconds:F2} s");

                // Really running there, once each.
                var running = (await cluster.Host(1).RunningContainerIdsAsync()).Concat(await cluster.Host(3).RunningContainerIdsAsync()).ToList();
                foreach (var id in ids) Assert.Equal(1, running.Count(r => r == id));

                // The events tell the story: h2 left, each of its containers was rescheduled.
                Assert.Contains("\"h2\"", await cluster.GetNativeAsync("/api/audit?type=NodeLeft&limit=1000"));
                var rescheduled = await cluster.GetNativeAsync("/api/audit?type=ContainerRescheduled&limit=1000");
                foreach (var id in victims) Assert.Contains(id, rescheduled);
            }
            finally
            {
                await RemoveAsync(cluster, ids);
                // The host comes back under the same name and address: a new incarnation, ready again.
                await cluster.RestartHostAsync(2);
                await AllReadyAsync(cluster);
            }
        });
    }

    [SkippableFact]
    public async Task A_partitioned_host_stops_its_containers_the_majority_runs_them_and_after_healing_none_runs_twice()
    {
        var cluster = fixture.Require();
        await Reported(cluster, async () =>
        {
            await AllReadyAsync(cluster);
            await fixture.ImportImageAsync();
            var ids = await RunAsync(cluster, 6, "partition", "--restart", "always");
            try
            {
                var before = await PlacementAsync(cluster, ids);
                var cutOff = before.Where(p => p.Value.Node == "h3").Select(p => p.Key).ToList();
                Assert.True(cutOff.Count > 0, $"some container on h3: {Describe(before)}");

                await cluster.PartitionAsync(3);
                Assert.False(await cluster.Host(3).ReachableAsync(TimeSpan.FromSeconds(1)), "h3 unreachable while partitioned");
                // The minority side stops its containers (it is downed and its process leaves) ...
                Assert.True(await Eventually.TrueAsync(async () =>
                    (await cluster.Host(3).RunningContainerIdsAsync()).Intersect(ids).Any() == false, Failover),
                    "h3 stopped its containers while cut off");
                // ... and the majority runs them.
                Assert.True(await Eventually.TrueAsync(async () =>
                    (await PlacementAsync(cluster, cutOff)).Values.All(p => p.State == "running" && p.Node is "h1" or "h2"), Failover),
                    $"h3's containers running on h1/h2: {Describe(await PlacementAsync(cluster, ids))}");

                await cluster.HealAsync(3);
                await Task.Delay(TimeSpan.FromSeconds(3)); // long enough for a wrongly revived container to show up
                var running = new List<string>();
                foreach (var host in cluster.Hosts.Where(h => h.IsRunning)) running.AddRange(await host.RunningContainerIdsAsync());
                foreach (var id in ids) Assert.True(running.Count(r => r == id) == 1, $"{id} runs once: {string.Join(", ", running)}");
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
    public async Task A_one_second_blip_moves_nothing()
    {
        var cluster = fixture.Require();
        await Reported(cluster, async () =>
        {
            await AllReadyAsync(cluster);
            await fixture.ImportImageAsync();
            var ids = await RunAsync(cluster, 3, "blip", "--restart", "always");
            try
            {
                var before = await PlacementAsync(cluster, ids);
                await cluster.BlipAsync(1, TimeSpan.FromSeconds(1));
                await Task.Delay(TimeSpan.FromSeconds(6)); // well past failure detection (1.5 s pause) and --stable-after (1 s)
                var after = await PlacementAsync(cluster, ids);
                foreach (var id in ids)
                {
                    Assert.Equal(before[id].Node, after[id].Node);
                    Assert.Equal("running", after[id].State);
                }
                Assert.All((await NodesAsync(cluster)).Values, n => Assert.Equal("ready", n.Status));
                Assert.DoesNotContain("Rescheduled", await cluster.GetNativeAsync("/api/audit?type=ContainerRescheduled&limit=1000"));
            }
            finally
            {
                await RemoveAsync(cluster, ids);
            }
        });
    }

    [SkippableFact]
    public async Task Constraints_pin_containers_to_matching_nodes()
    {
        var cluster = fixture.Require();
        await Reported(cluster, async () =>
        {
            await AllReadyAsync(cluster);
            await fixture.ImportImageAsync();
            var ids = new List<string>();
            try
            {
                for (var i = 0; i < 2; i++)
                    ids.Add(await RunOneAsync(cluster, "-e", "constraint:node==h2"));
                ids.Add(await RunOneAsync(cluster, "--label", "flotilla.constraint=zone==c"));
                var placed = await PlacementAsync(cluster, ids);
                Assert.Equal("h2", placed[ids[0]].Node);
                Assert.Equal("h2", placed[ids[1]].Node);
                Assert.Equal("h3", placed[ids[2]].Node);

                // Nothing matches: refused, not placed anywhere.
                var impossible = await cluster.DockerAsync("run", "-d", "-e", "constraint:node==nowhere", ThreeHostCluster.Image, "sleep", "600");
                Assert.NotEqual(0, impossible.ExitCode);
            }
            finally
            {
                await RemoveAsync(cluster, ids);
            }
        });
    }

    [SkippableFact]
    public async Task A_drained_node_hands_its_containers_over_and_gets_no_new_ones()
    {
        var cluster = fixture.Require();
        await Reported(cluster, async () =>
        {
            await AllReadyAsync(cluster);
            await fixture.ImportImageAsync();
            var ids = await RunAsync(cluster, 6, "drain", "--restart", "always");
            try
            {
                var drain = await Command.RunAsync("dotnet", [cluster.FlotillaDll, "node", "drain", "h1", "--http", $"127.0.0.1:{cluster.GatewayHttpPort}"], CancellationToken.None,
                    cluster.CliEnvironment);
                Assert.True(drain.ExitCode == 0, drain.ToString());
                Assert.True(await Eventually.TrueAsync(async () =>
                    (await PlacementAsync(cluster, ids)).Values.All(p => p.State == "running" && p.Node != "h1"), Failover),
                    $"nothing left on h1: {Describe(await PlacementAsync(cluster, ids))}");
                Assert.Empty((await cluster.Host(1).RunningContainerIdsAsync()).Intersect(ids));
                var more = await RunAsync(cluster, 3, "drained");
                ids.AddRange(more);
                Assert.DoesNotContain((await PlacementAsync(cluster, more)).Values, p => p.Node == "h1");
            }
            finally
            {
                await Command.RunAsync("dotnet", [cluster.FlotillaDll, "node", "activate", "h1", "--http", $"127.0.0.1:{cluster.GatewayHttpPort}"], CancellationToken.None,
                    cluster.CliEnvironment);
                await RemoveAsync(cluster, ids);
            }
        });
    }

    [SkippableFact]
    public async Task A_volume_lives_on_its_node_its_containers_stay_with_it_and_a_dead_node_keeps_them_with_the_reason_shown()
    {
        var cluster = fixture.Require();
        await Reported(cluster, async () =>
        {
            await AllReadyAsync(cluster);
            await fixture.ImportImageAsync();
            var volume = $"vol-{Guid.NewGuid():N}"[..16];
            var ids = new List<string>();
            int? killed = null;
            (NetnsHost Host, string Path)? bindSource = null;
            try
            {
                // Created through the gateway on h2 (not h1: h1 is the first seed, and restarted alone under load it can form a
                // cluster of its own), recorded there, nothing in the gateway's data dir. The scheduler's choice: VolumeCommandsSpec.
                var created = await cluster.DockerAsync("volume", "create", "--label", "purpose=test", "--opt", "node=h2", volume);
                Assert.True(created.ExitCode == 0, created.ToString());
                var inspect = await cluster.DockerAsync("volume", "inspect", "-f", "{{.Status.Node}}|{{.Mountpoint}}|{{.Labels.purpose}}", volume);
                Assert.True(inspect.ExitCode == 0, inspect.ToString());
                var fields = inspect.Stdout.Trim().Split('|');
                var home = cluster.Host(2);
                Assert.Equal(home.Name, fields[0]);
                Assert.Equal(Path.Combine(cluster.Root, home.Name, "volumes", volume, "_data"), fields[1]);
                Assert.Equal("test", fields[2]);
                Assert.False(Directory.Exists(Path.Combine(cluster.Root, "gw", "volumes")), "the gateway keeps no volume");
                var refused = await cluster.DockerAsync("volume", "create", "--opt", "type=nfs", $"{volume}-nfs");
                Assert.True(refused.ExitCode != 0 && refused.Stderr.Contains("\"type\" is not supported"), refused.ToString());

                // Its containers go to its node (spread would put them elsewhere), write there, and read it back.
                var run = await cluster.DockerAsync("run", "-d", "--restart", "always", "-v", $"{volume}:/data", ThreeHostCluster.Image,
                    "sh", "-c", "echo hello > /data/f; exec sleep 600");
                Assert.True(run.ExitCode == 0, run.ToString());
                var writer = run.Stdout.Trim();
                ids.Add(writer);
                var mover = await RunOneAsync(cluster, "--restart", "always", "--label", "flotilla.volume.move=true", "-v", $"{volume}:/data");
                ids.Add(mover);
                var placed = await PlacementAsync(cluster, ids);
                Assert.True(placed.Values.All(p => p.Node == home.Name && p.State == "running"), $"on {home.Name}: {Describe(placed)}");
                Assert.True(await Eventually.TrueAsync(async () => (await cluster.DockerAsync("exec", mover, "cat", "/data/f")).Stdout.Trim() == "hello",
                    TimeSpan.FromSeconds(10)), "the second container reads what the first wrote");
                Assert.Equal("hello", (await home.ExecAsync("cat", Path.Combine(fields[1], "f"))).Stdout.Trim());
                Assert.False(Directory.Exists(Path.Combine(cluster.Root, "gw", "volumes")), "the gateway keeps no volume");

                // A missing bind source is made on the container's node at start, not where the request came in.
                var other = cluster.Hosts.First(h => h != home);
                var source = Path.Combine(cluster.Root, $"bind-{Guid.NewGuid():N}"[..13]);
                bindSource = (other, source);
                var bound = await RunOneAsync(cluster, "-e", $"constraint:node=={other.Name}", "-v", $"{source}:/b");
                ids.Add(bound);
                Assert.Equal(0, (await other.ExecAsync("test", "-d", source)).ExitCode);
                Assert.False(Directory.Exists(source), "the bind source is not made on the gateway");

                // The volume's node dies: the container is not started elsewhere with an empty volume, and says why.
                killed = home.Index;
                await cluster.KillHostAsync(home.Index);
                Assert.True(await Eventually.TrueAsync(async () =>
                {
                    var state = await cluster.DockerAsync("inspect", "-f", "{{.State.Status}}", writer);
                    return state.Stdout.Trim() == "exited" && (await PlacementAsync(cluster, [mover]))[mover] is { State: "running" } m && m.Node != home.Name;
                }, Failover), $"writer kept off, mover moved: {Describe(await PlacementAsync(cluster, ids))}");
                var why = await cluster.DockerAsync("inspect", "-f", "{{.Node.Name}}|{{.State.Error}}", writer);
                output.WriteLine(why.Stdout.Trim());
                Assert.StartsWith(home.Name + "|", why.Stdout.Trim());
                Assert.Contains($"local volume(s) {volume}, which live on node {home.Name}", why.Stdout);
                Assert.Contains("flotilla.volume.move=true", why.Stdout);
                await Task.Delay(TimeSpan.FromSeconds(3)); // a wrong move would show up by now
                foreach (var host in cluster.Hosts.Where(h => h.IsRunning))
                    Assert.DoesNotContain(writer, await host.RunningContainerIdsAsync());
                var lost = await cluster.GetNativeAsync($"/api/audit?container={writer}&type=ContainerNodeLost&limit=10");
                Assert.Contains("local volume(s)", lost);
                // The one labelled to move anyway did, to an empty volume of the same name there.
                Assert.NotEqual(0, (await cluster.DockerAsync("exec", mover, "cat", "/data/f")).ExitCode);
            }
            finally
            {
                await RemoveAsync(cluster, ids);
                // The host's file view shows only its own data dir (the file-view spec checks): take the bind source away.
                if (bindSource is { } made && made.Host.IsRunning) await made.Host.ExecAsync("rm", "-rf", made.Path);
                if (killed is { } index)
                {
                    await cluster.RestartHostAsync(index);
                    await AllReadyAsync(cluster);
                }
                await cluster.DockerAsync("volume", "rm", volume);
            }
        });
    }

    // ---------------------------------------------------------------- helpers

    internal sealed record NodeRow(string Name, string Status);

    internal sealed record Placement(string Node, string State);

    /// <summary>Runs the body; on failure, prints every process's log before the assertion propagates.</summary>
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

    internal static async Task<Dictionary<string, NodeRow>> NodesAsync(NetnsCluster cluster)
    {
        var nodes = JsonDocument.Parse(await cluster.GetNativeAsync("/api/nodes")).RootElement;
        return nodes.EnumerateArray()
            .Select(n => new NodeRow(n.GetProperty("name").GetString()!, n.GetProperty("status").GetString()!))
            .ToDictionary(n => n.Name);
    }

    internal static string Describe<T>(IReadOnlyDictionary<string, T> rows) => string.Join(", ", rows.Select(r => $"{r.Key}={r.Value}"));

    internal static async Task AllReadyAsync(NetnsCluster cluster)
    {
        var ready = await Eventually.TrueAsync(async () =>
        {
            var nodes = await NodesAsync(cluster);
            return cluster.Hosts.All(h => nodes.TryGetValue(h.Name, out var n) && n.Status == "ready");
        }, TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(250));
        Assert.True(ready, $"every host ready: {Describe(await NodesAsync(cluster))}");
    }

    internal static async Task<List<string>> RunAsync(NetnsCluster cluster, int count, string prefix, params string[] options)
    {
        var ids = new List<string>();
        for (var i = 0; i < count; i++) ids.Add(await RunOneAsync(cluster, ["--name", $"{prefix}-{i}", .. options]));
        return ids;
    }

    internal static async Task<string> RunOneAsync(NetnsCluster cluster, params string[] options)
    {
        var result = await cluster.DockerAsync(["run", "-d", .. options, ThreeHostCluster.Image, "sleep", "600"]);
        Assert.True(result.ExitCode == 0, result.ToString());
        return result.Stdout.Trim();
    }

    /// <summary>Where the cluster says each container is (the container list's Node) and its state.</summary>
    internal static async Task<Dictionary<string, Placement>> PlacementAsync(NetnsCluster cluster, IEnumerable<string> ids)
    {
        using var http = new HttpClient();
        var list = JsonDocument.Parse(await http.GetStringAsync($"http://127.0.0.1:{cluster.GatewayDockerPort}/containers/json?all=1")).RootElement;
        var wanted = ids.ToHashSet();
        return list.EnumerateArray()
            .Where(c => wanted.Contains(c.GetProperty("Id").GetString()!))
            .ToDictionary(c => c.GetProperty("Id").GetString()!,
                c => new Placement(c.TryGetProperty("Node", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString()! : "", c.GetProperty("State").GetString()!));
    }

    /// <summary>Spread counts every container of a node: start from none, and let the scheduler's picture (refreshed every 2 s) catch up.</summary>
    private static async Task NoContainersAsync(NetnsCluster cluster)
    {
        var all = (await cluster.DockerAsync("ps", "-aq", "--no-trunc")).Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        if (all.Length == 0) return;
        await RemoveAsync(cluster, all);
        Assert.True(await Eventually.TrueAsync(async () => (await cluster.DockerAsync("ps", "-aq")).Stdout.Trim().Length == 0, TimeSpan.FromSeconds(30)),
            "every container removed");
        await Task.Delay(TimeSpan.FromSeconds(2.5));
    }

    internal static async Task RemoveAsync(NetnsCluster cluster, IReadOnlyCollection<string> ids)
    {
        if (ids.Count > 0) await cluster.DockerAsync(["rm", "-f", .. ids]);
    }
}
