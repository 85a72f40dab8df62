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

    // CPU seconds of this process and of the embedded PostgreSQL (postmaster and its backends) per step: on a shared
    // 2-core machine the question is often whose CPU a step burns, not how long it waits.
    var cpu = new List<(string Step, double Process, double Postgres)>();
    async Task<(double Seconds, List<double> Latencies)> RunAsync(int count, Func<int, Task> one, string? step = null)
    {
        var latencies = new List<double>(count);
        var cpuBefore = (Process: Environment.CpuUsage.TotalTime.TotalSeconds, Postgres: PostgresCpuSeconds(embedded));
        try
        {
            return await RunTimedAsync(count, one, latencies);
        }
        finally
        {
            if (step is not null)
                cpu.Add((step, Environment.CpuUsage.TotalTime.TotalSeconds - cpuBefore.Process, PostgresCpuSeconds(embedded) - cpuBefore.Postgres));
        }
    }

    async Task<(double Seconds, List<double> Latencies)> RunTimedAsync(int count, Func<int, Task> one, List<double> latencies)
    {
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
    }, "scheduler decisions");
    await Task.Delay(TimeSpan.FromSeconds(31), ct); // let the probes' pending reservations lapse

    // Warm-up long enough for tiered compilation to finish with the path (with 200 the JIT still took a third of the
    // CPU samples during the timed creates).
    await RunAsync(Math.Min(1000, placements), i => containers.CreateScheduledAsync($"warm-{i}", definition, origin, ct));
    await Task.Delay(TimeSpan.FromSeconds(2), ct);
    Console.WriteLine($"Timing {placements:N0} creates ...");
    var createGroupsBefore = ((MartenEventJournal)journal).Committed;
    var creates = await RunAsync(placements, i => containers.CreateScheduledAsync($"bench-{i}", definition, origin, ct), "create→placed→stored");
    var createGroups = ((MartenEventJournal)journal).Committed;
    var createMeanGroup = (double)(createGroups.Appends - createGroupsBefore.Appends) / Math.Max(1, createGroups.Transactions - createGroupsBefore.Transactions);

    // Where the time goes: the name lookup alone, the entity's create (stream read + append with projection) alone,
    // and the journal's two halves of it without the actor: the read of the new (empty) stream, and the append.
    var names = await RunAsync(placements, i => containers.FindAsync($"bench-{i}", ct), "name lookup");
    var appends = await RunAsync(placements, i => containers.SendAsync(new CreateContainer(
        Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)), $"direct-{i}", definition, "sim-0001", origin,
        new PlacementDecision("sim-0001", "spread", "bench"))), "entity create");
    var reads = await RunAsync(placements, i => journal.ReadAsync(ContainerStreams.Key($"absent-{i}"), ct), "journal read");
    Task<long> AppendCreate(IEventJournal to, string prefix, int i)
    {
        var id = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        var at = DateTimeOffset.UtcNow;
        return to.AppendAsync(ContainerStreams.Key(id), 0,
            [new ContainerCreated(id, $"{prefix}-{i}", definition, "sim-0001", at), new ContainerPlaced(id, "sim-0001", "spread", "bench", at)],
            EventMetadata.From(origin, "bench-1"), ct);
    }
    var groupsBefore = ((MartenEventJournal)journal).Committed;
    var journalAppends = await RunAsync(placements, i => AppendCreate(journal, "journal", i), "journal append");
    var groups = ((MartenEventJournal)journal).Committed;
    var meanGroup = (double)(groups.Appends - groupsBefore.Appends) / Math.Max(1, groups.Transactions - groupsBefore.Transactions);
    // The same appends, each in a transaction of its own (the journal before group commit).
    var ungrouped = new MartenEventJournal(app.Services.GetRequiredService<Marten.IDocumentStore>(), maxBatch: 1);
    var singleAppends = await RunAsync(placements, i => AppendCreate(ungrouped, "journal-single", i), "journal append, 1/txn");

    // The scheduler reads both at most every 250 ms while placements keep coming: one at a time, ten times each.
    var queries = app.Services.GetRequiredService<ClusterQueries>();
    async Task<(double Ms, double ProcessCpuMs, double PostgresCpuMs, int Rows)> ReadTenTimes(Func<Task<int>> read)
    {
        var rows = await read(); // warm
        var (process, postgres) = (Environment.CpuUsage.TotalTime.TotalSeconds, PostgresCpuSeconds(embedded));
        var sw = Stopwatch.StartNew();
        for (var i = 0; i < 10; i++) rows = await read();
        return (sw.Elapsed.TotalMilliseconds / 10, (Environment.CpuUsage.TotalTime.TotalSeconds - process) * 100,
            (PostgresCpuSeconds(embedded) - postgres) * 100, rows);
    }
    var placedRead = await ReadTenTimes(async () => (await queries.ContainersPlacedAsync(ct)).Count);
    var nodesRead = await ReadTenTimes(async () => (await queries.NodesAsync(ct)).Count);
    // What that read cost before it selected plain columns: the whole views.
    var viewsRead = await ReadTenTimes(async () =>
    {
        await using var session = app.Services.GetRequiredService<Marten.IDocumentStore>().QuerySession();
        return (await Marten.QueryableExtensions.ToListAsync(session.Query<ContainerView>()
            .Where(c => c.Desired == DesiredState.Created || c.Desired == DesiredState.Running), ct)).Count;
    });
    List<int> perHost;
    await using (var session = app.Services.GetRequiredService<Marten.IDocumentStore>().QuerySession())
        perHost = (await Marten.QueryableExtensions.ToListAsync(session.Query<ContainerView>()
                .Where(c => c.Name.StartsWith("bench-") || c.Name.StartsWith("warm-")).Select(c => c.Node), ct))
            .GroupBy(n => n).Select(g => g.Count()).ToList();
    Console.WriteLine();
    Console.WriteLine($"scheduler decisions   {placements / decisions.Seconds,10:N0} /s   p50 {BenchStats.Median(decisions.Latencies):F2} ms  p90 {BenchStats.P90(decisions.Latencies):F2} ms");
    Console.WriteLine($"create→placed→stored  {placements / creates.Seconds,10:N0} /s   p50 {BenchStats.Median(creates.Latencies):F2} ms  p90 {BenchStats.P90(creates.Latencies):F2} ms  ({createMeanGroup:F1} appends per transaction)");
    Console.WriteLine($"  name lookup alone   {placements / names.Seconds,10:N0} /s   p50 {BenchStats.Median(names.Latencies):F2} ms");
    Console.WriteLine($"  entity create alone {placements / appends.Seconds,10:N0} /s   p50 {BenchStats.Median(appends.Latencies):F2} ms");
    Console.WriteLine($"  journal read alone  {placements / reads.Seconds,10:N0} /s   p50 {BenchStats.Median(reads.Latencies):F2} ms");
    Console.WriteLine($"  journal append alone{placements / journalAppends.Seconds,10:N0} /s   p50 {BenchStats.Median(journalAppends.Latencies):F2} ms  (grouped, {meanGroup:F1} appends per transaction)");
    Console.WriteLine($"  journal append alone{placements / singleAppends.Seconds,10:N0} /s   p50 {BenchStats.Median(singleAppends.Latencies):F2} ms  (one transaction each)");
    Console.WriteLine($"the scheduler's read of {placedRead.Rows:N0} placed containers: {placedRead.Ms:F0} ms (CPU {placedRead.ProcessCpuMs:F0} ms / {placedRead.PostgresCpuMs:F0} ms)");
    Console.WriteLine($"  the same as whole views: {viewsRead.Ms:F0} ms (CPU {viewsRead.ProcessCpuMs:F0} ms / {viewsRead.PostgresCpuMs:F0} ms)");
    Console.WriteLine($"the scheduler's read of {nodesRead.Rows:N0} nodes: {nodesRead.Ms:F0} ms (CPU {nodesRead.ProcessCpuMs:F0} ms / {nodesRead.PostgresCpuMs:F0} ms)");
    Console.WriteLine("CPU per operation (this process / PostgreSQL):");
    foreach (var (step, process, postgres) in cpu)
        Console.WriteLine($"  {step,-22} {process * 1000 / placements,6:F2} ms / {postgres * 1000 / placements,6:F2} ms");
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

// The postmaster and its backends (its children); 0 for an external server.
static double PostgresCpuSeconds(EmbeddedPostgres? embedded)
{
    if (embedded is null) return 0;
    try
    {
        var postmaster = File.ReadLines(Path.Combine(embedded.DataDirectory, "postmaster.pid")).First().Trim();
        var ticks = 0L;
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            var pid = Path.GetFileName(dir);
            if (!pid.All(char.IsAsciiDigit)) continue;
            string stat;
            try { stat = File.ReadAllText(Path.Combine(dir, "stat")); }
            catch (IOException) { continue; }
            catch (UnauthorizedAccessException) { continue; }
            // Fields after the ")" of the command name: state ppid ... utime(14) stime(15), counted from 1.
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            if (pid != postmaster && fields[1] != postmaster) continue;
            ticks += long.Parse(fields[11]) + long.Parse(fields[12]);
        }
        return ticks / 100.0; // USER_HZ
    }
    catch (IOException)
    {
        return 0;
    }
}

string? Arg(string name) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault();
int ArgInt(string name, int fallback) => int.TryParse(Arg(name), out var v) ? v : fallback;
