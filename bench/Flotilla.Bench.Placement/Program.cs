using System.Diagnostics;
using System.Net;
using Akka.Actor;
using Akka.Hosting;
using Flotilla.Bench.Common;
using Flotilla.Cli.Hosting;
using Flotilla.Cluster.Containers;
using Flotilla.Cluster.EventStore;
using Flotilla.Cluster.Hosting;
using Flotilla.Cluster.Queries;
using Flotilla.Cluster.Scheduling;
using Flotilla.Contracts;
using Flotilla.Contracts.Containers;
using Flotilla.Contracts.Nodes;
using Flotilla.NodeRuntime.Host;
using Microsoft.Extensions.DependencyInjection;

// Placements per second: create → placed → persisted, through the same ContainerService the Docker API uses
// (name check, scheduler singleton, ContainerEntity append with its ContainerCreated + ContainerPlaced), against
// N simulated hosts. The hosts are node registrations that point at this process (no runtime runs: creating a
// container does not touch one). Anchors: Nomad C1M 3,750/s on 5 servers, Kubernetes scheduler_perf ~800–900 pods/s.
Console.SetOut(new InfoFilter(Console.Out));
var hosts = ArgInt("--hosts", 1000);
var placements = ArgInt("--placements", 5000);
var concurrency = ArgInt("--concurrency", 64);
var givenPostgres = Arg("--postgres") ?? Environment.GetEnvironmentVariable("FLOTILLA_BENCH_POSTGRES");
using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(20));
var ct = cts.Token;

var root = Path.Combine(Path.GetTempPath(), $"flotilla-place-{Guid.NewGuid():N}"[..24]);
EmbeddedPostgres? embedded = null;
try
{
    string cs;
    if (givenPostgres is not null)
        cs = await EmbeddedPostgres.EnsureDatabaseAsync(givenPostgres, $"flotilla_placement_bench_{DateTime.UtcNow:yyyyMMddHHmmss}", ct);
    else
    {
        Console.WriteLine($"Starting embedded PostgreSQL in {root} ...");
        embedded = await EmbeddedPostgres.StartAsync(root, null, ct);
        cs = await embedded.CreateDatabaseAsync("placement_bench", ct);
    }
    Console.WriteLine($"Placement benchmark: {placements:N0} creates, {concurrency} in flight, {hosts:N0} simulated hosts, " +
                      $"{Environment.ProcessorCount} cores, load average {BenchStats.LoadAverage()}");

    // A node-role process without a container runtime: shards, scheduler, journal — everything a placement touches.
    var facts = (await HostFacts.ProbeAsync(null, ct)) with { OciRuntimePath = null };
    await using var app = FlotillaProcess.Build(new ProcessSettings
    {
        NodeName = "bench-1",
        Roles = [FlotillaClusterOptions.NodeRole],
        DataRoot = Path.Combine(root, "data"),
        DockerApi = new IPEndPoint(IPAddress.Loopback, BenchStats.FreePort()),
    }, cs, facts);
    await app.StartAsync(ct);
    var system = app.Services.GetRequiredService<ActorSystem>();
    await AllInOneHost.WhenMemberUp(system).WaitAsync(TimeSpan.FromMinutes(1), ct);
    var address = Akka.Cluster.Cluster.Get(system).SelfAddress.ToString();

    // The simulated hosts: registered like real ones, 2–64 CPUs, 4–256 GiB, a zone label.
    var journal = app.Services.GetRequiredService<IEventJournal>();
    var random = new Random(42);
    var register = Stopwatch.StartNew();
    await Parallel.ForEachAsync(Enumerable.Range(1, hosts), new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = ct }, async (i, token) =>
    {
        int cpus;
        long memory;
        lock (random)
        {
            cpus = 2 << random.Next(0, 6);
            memory = (4L << 30) << random.Next(0, 7);
        }
        var name = $"sim-{i:D4}";
        await journal.AppendAsync(NodeStreams.Key(name), 0,
            [new NodeJoined(name, name, address, [FlotillaClusterOptions.NodeRole], cpus, memory, "sim", "sim", new Dictionary<string, string> { ["zone"] = $"z{i % 3}" },
                DateTimeOffset.UtcNow, "")],
            new EventMetadata("bench", "bench-1", Guid.NewGuid().ToString("N"), null), token);
    });
    Console.WriteLine($"Registered {hosts:N0} hosts in {register.Elapsed.TotalSeconds:F1} s");
    await Task.Delay(TimeSpan.FromSeconds(3), ct); // the scheduler's next read of the node table

    var containers = app.Services.GetRequiredService<ContainerService>();
    var scheduler = app.Services.GetRequiredService<IRequiredActor<Scheduler>>().ActorRef;
    var definition = ContainerDefinition.Minimal("busybox:latest", "sha256:" + new string('a', 64), ["sleep", "300"], ["PATH=/bin"]) with
    {
        Memory = 64L << 20,
    };
    var origin = new RequestOrigin("bench", "placement-bench");

    async Task<(double Seconds, List<double> Latencies)> RunAsync(int count, Func<int, Task> one)
    {
        var latencies = new List<double>(count);
        var sw = Stopwatch.StartNew();
        await Parallel.ForEachAsync(Enumerable.Range(0, count), new ParallelOptions { MaxDegreeOfParallelism = concurrency, CancellationToken = ct }, async (i, _) =>
        {
            var t = Stopwatch.GetTimestamp();
            await one(i);
            var ms = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
            lock (latencies) latencies.Add(ms);
        });
        return (sw.Elapsed.TotalSeconds, latencies);
    }

    // The decision alone (the singleton's picture of 1,000 hosts), then the whole create path.
    var decisions = await RunAsync(placements, async i =>
    {
        var reply = await scheduler.Ask<object>(new PlaceContainer($"probe-{i}", 64L << 20, 0, [], null), TimeSpan.FromSeconds(30), ct);
        if (reply is not PlacementDecision) throw new InvalidOperationException($"placement refused: {reply}");
    });
    await Task.Delay(TimeSpan.FromSeconds(31), ct); // let the probes' pending reservations lapse

    await RunAsync(Math.Min(200, placements), i => containers.CreateScheduledAsync($"warm-{i}", definition, origin, ct));
    var creates = await RunAsync(placements, i => containers.CreateScheduledAsync($"bench-{i}", definition, origin, ct));

    // Where the time goes: the name lookup alone, and the entity's create (stream read + append with projection) alone.
    var names = await RunAsync(placements, i => containers.FindAsync($"bench-{i}", ct));
    var appends = await RunAsync(placements, i => containers.SendAsync(new CreateContainer(
        Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)), $"direct-{i}", definition, "sim-0001", origin,
        new PlacementDecision("sim-0001", "spread", "bench"))));

    var placed = await app.Services.GetRequiredService<ClusterQueries>().ContainersPlacedAsync(ct);
    var perHost = placed.Where(c => !c.Name.StartsWith("direct-", StringComparison.Ordinal)).GroupBy(c => c.Node).Select(g => g.Count()).ToList();
    Console.WriteLine();
    Console.WriteLine($"scheduler decisions   {placements / decisions.Seconds,10:N0} /s   p50 {BenchStats.Median(decisions.Latencies):F2} ms  p90 {BenchStats.P90(decisions.Latencies):F2} ms");
    Console.WriteLine($"create→placed→stored  {placements / creates.Seconds,10:N0} /s   p50 {BenchStats.Median(creates.Latencies):F2} ms  p90 {BenchStats.P90(creates.Latencies):F2} ms");
    Console.WriteLine($"  name lookup alone   {placements / names.Seconds,10:N0} /s   p50 {BenchStats.Median(names.Latencies):F2} ms");
    Console.WriteLine($"  entity create alone {placements / appends.Seconds,10:N0} /s   p50 {BenchStats.Median(appends.Latencies):F2} ms");
    Console.WriteLine($"scheduled creates spread over {perHost.Count:N0} of {hosts:N0} hosts: {perHost.Min()}–{perHost.Max()} containers each");
    Console.WriteLine();
    var rate = placements / creates.Seconds;
    Console.WriteLine($"ratio vs Kubernetes scheduler_perf (~850 pods/s):  {rate / 850:F2}x");
    Console.WriteLine($"ratio vs Nomad C1M (3,750/s on 5 servers):         {rate / 3750:F2}x");
    Console.WriteLine($"goal ≥ 1,000/s here: {(rate >= 1000 ? "met" : "missed")}");
    await app.StopAsync(CancellationToken.None);
    return 0;
}
finally
{
    if (embedded is not null) await embedded.DisposeAsync();
    try
    {
        Directory.Delete(root, recursive: true);
    }
    catch (IOException)
    {
    }
}

string? Arg(string name) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault();
int ArgInt(string name, int fallback) => int.TryParse(Arg(name), out var v) ? v : fallback;
