using System.Diagnostics;
using System.Globalization;
using Flotilla.Bench.Common;
using Flotilla.Cli.Hosting;
using Flotilla.Cluster.Audit;
using Flotilla.Cluster.EventStore;
using Flotilla.Contracts.Containers;
using Npgsql;
using NpgsqlTypes;

// Audit query latency at scale: N events (default 1,000,000) over ~10k container streams, loaded with
// binary COPY into Marten's own mt_events/mt_streams, then AuditQuery (the code the API runs) timed on
// "events of one container", "one correlation id" and a user + time-range page.
Console.SetOut(new InfoFilter(Console.Out));
var events = ArgInt("--events", 1_000_000);
var containers = ArgInt("--containers", 10_000);
var samples = ArgInt("--samples", 1000);
var givenPostgres = Arg("--postgres") ?? Environment.GetEnvironmentVariable("FLOTILLA_BENCH_POSTGRES");
using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(20));
var ct = cts.Token;

var root = Path.Combine(Path.GetTempPath(), $"flotilla-audit-{Guid.NewGuid():N}"[..24]);
EmbeddedPostgres? embedded = null;
try
{
    string cs;
    if (givenPostgres is not null)
        cs = await EmbeddedPostgres.EnsureDatabaseAsync(givenPostgres, $"flotilla_audit_bench_{DateTime.UtcNow:yyyyMMddHHmmss}", ct);
    else
    {
        Console.WriteLine($"Starting embedded PostgreSQL in {root} ...");
        embedded = await EmbeddedPostgres.StartAsync(root, null, ct);
        cs = await embedded.CreateDatabaseAsync("audit_bench", ct);
    }
    Console.WriteLine($"Audit benchmark: {events:N0} events over {containers:N0} container streams, {samples} samples per query, " +
                      $"{Environment.ProcessorCount} cores, load average {BenchStats.LoadAverage()}");

    using var store = FlotillaStore.Create(cs);
    await store.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
    var journal = new MartenEventJournal(store);
    var audit = new AuditQuery(store);
    var schema = store.Options.Events.DatabaseSchemaName;

    // One real append per event type, so type names and .NET type names are Marten's own.
    var seedAt = DateTimeOffset.UtcNow;
    var definition = ContainerDefinition.Minimal("busybox:latest", "sha256:" + new string('a', 64), ["sleep", "300"], ["PATH=/bin"],
        new Dictionary<string, string> { ["team"] = "bench" });
    var serializer = store.Options.Serializer();
    await journal.AppendAsync("container-seed", 0,
    [
        new ContainerCreated("seed", "seed", definition, "bench-node", seedAt),
        new ContainerStarted("seed", 1, "bench-node", 42, seedAt),
        new ContainerExecStarted("seed", "exec1", ["sh"], "root", false, seedAt),
        new ContainerStopped("seed", Signal.Term, 10, seedAt),
        new ContainerExited("seed", 1, 137, false, seedAt),
    ], new EventMetadata("seed", "bench-node", "seed", null), ct);
    var types = new Dictionary<string, string>();
    await using (var conn = new NpgsqlConnection(cs))
    {
        await conn.OpenAsync(ct);
        await using var cmd = new NpgsqlCommand($"SELECT DISTINCT type, mt_dotnet_type FROM {schema}.mt_events", conn);
        await using var reader = await cmd.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct)) types[reader.GetString(0)] = reader.GetString(1);
    }

    // Load: events in time order over the last 30 days, each to a random container; a container's
    // first two events (created, started) share a correlation id, as docker run does.
    var load = Stopwatch.StartNew();
    var random = new Random(42);
    // Which container each event goes to, fixed up front: streams (with their final versions) are copied first.
    var streamOf = new int[events];
    var finalVersions = new long[containers];
    for (var i = 0; i < events; i++) finalVersions[streamOf[i] = random.Next(containers)]++;
    var versions = new long[containers];
    var ids = Enumerable.Range(0, containers).Select(i => $"{i:x8}{Guid.NewGuid():N}{Guid.NewGuid():N}"[..64]).ToArray();
    var stories = new string[containers];
    var correlations = new List<string>();
    var start = DateTimeOffset.UtcNow.AddDays(-30);
    var step = TimeSpan.FromDays(30).Ticks / events;
    var users = new[] { "anonymous@127.0.0.1", "anonymous@10.0.0.7", "local", "system", "ci@10.0.0.9" };
    var nodes = new[] { "node-1", "node-2", "node-3" };
    string[] cycle = ["container_exec_started", "container_stopped", "container_exited", "container_started"];
    await using (var conn = new NpgsqlConnection(cs))
    {
        await conn.OpenAsync(ct);
        // Marten's Rich appends take sequence numbers themselves (no column default): reserve a block.
        long firstSeq;
        await using (var reserve = new NpgsqlCommand(
            $"SELECT setval('{schema}.mt_events_sequence', nextval('{schema}.mt_events_sequence') + {events}) - {events}", conn))
            firstSeq = Convert.ToInt64(await reserve.ExecuteScalarAsync(ct));
        await using (var copy = await conn.BeginBinaryImportAsync(
            $"COPY {schema}.mt_streams (id, type, version, timestamp, created, tenant_id, is_archived) FROM STDIN (FORMAT BINARY)", ct))
        {
            for (var c = 0; c < containers; c++)
            {
                if (finalVersions[c] == 0) continue;
                await copy.StartRowAsync(ct);
                await copy.WriteAsync("container-" + ids[c], NpgsqlDbType.Varchar, ct);
                await copy.WriteNullAsync(ct);
                await copy.WriteAsync(finalVersions[c], NpgsqlDbType.Bigint, ct);
                await copy.WriteAsync(DateTimeOffset.UtcNow, NpgsqlDbType.TimestampTz, ct);
                await copy.WriteAsync(start, NpgsqlDbType.TimestampTz, ct);
                await copy.WriteAsync("*DEFAULT*", NpgsqlDbType.Varchar, ct);
                await copy.WriteAsync(false, NpgsqlDbType.Boolean, ct);
            }
            await copy.CompleteAsync(ct);
        }
        await using (var copy = await conn.BeginBinaryImportAsync(
            $"COPY {schema}.mt_events (seq_id, id, stream_id, version, data, type, timestamp, tenant_id, mt_dotnet_type, correlation_id, causation_id, headers, user_name, is_archived) FROM STDIN (FORMAT BINARY)", ct))
        {
            for (var i = 0; i < events; i++)
            {
                var c = streamOf[i];
                var version = ++versions[c];
                var at = start.AddTicks(step * i);
                var id = ids[c];
                string type;
                object data;
                string correlation;
                if (version == 1)
                {
                    type = "container_created";
                    data = new ContainerCreated(id, "c" + c, definition, nodes[c % 3], at);
                    correlation = stories[c] = Guid.NewGuid().ToString("N");
                    if (correlations.Count < 100_000) correlations.Add(correlation);
                }
                else
                {
                    type = version == 2 ? "container_started" : cycle[(version - 3) % 4];
                    data = type switch
                    {
                        "container_started" => new ContainerStarted(id, version, nodes[c % 3], 1000 + (int)version, at),
                        "container_exec_started" => new ContainerExecStarted(id, Guid.NewGuid().ToString("N"), ["sh", "-c", "echo hi"], "root", false, at),
                        "container_stopped" => new ContainerStopped(id, Signal.Term, 10, at),
                        _ => (object)new ContainerExited(id, version, 137, false, at),
                    };
                    correlation = version == 2 ? stories[c] : Guid.NewGuid().ToString("N");
                }
                await copy.StartRowAsync(ct);
                await copy.WriteAsync(firstSeq + i, NpgsqlDbType.Bigint, ct);
                await copy.WriteAsync(Guid.NewGuid(), NpgsqlDbType.Uuid, ct);
                await copy.WriteAsync("container-" + id, NpgsqlDbType.Varchar, ct);
                await copy.WriteAsync(version, NpgsqlDbType.Bigint, ct);
                await copy.WriteAsync(serializer.ToJson(data), NpgsqlDbType.Jsonb, ct);
                await copy.WriteAsync(type, NpgsqlDbType.Varchar, ct);
                await copy.WriteAsync(at, NpgsqlDbType.TimestampTz, ct);
                await copy.WriteAsync("*DEFAULT*", NpgsqlDbType.Varchar, ct);
                await copy.WriteAsync(types[type], NpgsqlDbType.Varchar, ct);
                await copy.WriteAsync(correlation, NpgsqlDbType.Varchar, ct);
                await copy.WriteNullAsync(ct);
                await copy.WriteAsync($"{{\"node\":\"{nodes[c % 3]}\"}}", NpgsqlDbType.Jsonb, ct);
                await copy.WriteAsync(users[random.Next(users.Length)], NpgsqlDbType.Varchar, ct);
                await copy.WriteAsync(false, NpgsqlDbType.Boolean, ct);
                if ((i + 1) % 200_000 == 0) Console.WriteLine($"  {i + 1:N0} events copied ({load.Elapsed.TotalSeconds:F0} s)");
            }
            await copy.CompleteAsync(ct);
        }
    }
    Console.WriteLine($"loaded {events:N0} events in {load.Elapsed.TotalSeconds:F1} s ({events / load.Elapsed.TotalSeconds:N0} events/s, binary COPY)");
    var indexes = Stopwatch.StartNew();
    await audit.EnsureIndexesAsync(ct);
    await using (var conn = new NpgsqlConnection(cs))
    {
        await conn.OpenAsync(ct);
        await using var analyze = new NpgsqlCommand($"ANALYZE {schema}.mt_events; ANALYZE {schema}.mt_streams", conn) { CommandTimeout = 600 };
        await analyze.ExecuteNonQueryAsync(ct);
    }
    Console.WriteLine($"audit indexes built and analyzed in {indexes.Elapsed.TotalSeconds:F1} s");
    await using (var conn = new NpgsqlConnection(cs))
    {
        await conn.OpenAsync(ct);
        await using var size = new NpgsqlCommand(
            $"SELECT pg_size_pretty(pg_table_size('{schema}.mt_events')), pg_size_pretty(pg_indexes_size('{schema}.mt_events')), current_setting('shared_buffers')", conn);
        await using var reader = await size.ExecuteReaderAsync(ct);
        await reader.ReadAsync(ct);
        Console.WriteLine($"mt_events: table {reader.GetString(0)}, indexes {reader.GetString(1)}; shared_buffers {reader.GetString(2)}");
    }

    // Timed: the AuditQuery calls the native API makes (pooled connection open + query + JSON parse of the bodies).
    async Task<(double P50, double P99, double Max, double Rows)> TimeAsync(string name, Func<int, AuditFilter> filter)
    {
        for (var i = 0; i < 50; i++) await audit.QueryAsync(filter(i), ct);
        var ms = new List<double>(samples);
        long rows = 0;
        for (var i = 0; i < samples; i++)
        {
            var sw = Stopwatch.StartNew();
            var page = await audit.QueryAsync(filter(i + 50), ct);
            ms.Add(sw.Elapsed.TotalMilliseconds);
            rows += page.Entries.Count;
        }
        var sorted = ms.Order().ToArray();
        var p99 = sorted[Math.Max(0, (int)Math.Ceiling(0.99 * sorted.Length) - 1)];
        var result = (BenchStats.Median(ms), p99, sorted[^1], rows / (double)samples);
        Console.WriteLine($"{name,-52} p50 {result.Item1,7:F2} ms   p99 {result.p99,7:F2} ms   max {result.Item3,7:F2} ms   rows/query {result.Item4:F1}");
        return result;
    }

    var pick = new Random(7);
    Console.WriteLine();
    var one = await TimeAsync("events of one container (all, <= 1000)", _ => new AuditFilter
    { Streams = ["container-" + ids[pick.Next(containers)]], Limit = AuditQuery.MaxLimit });
    // The common question is about a container just worked with: its pages are in PostgreSQL's cache.
    var recent = Enumerable.Range(0, 100).Select(_ => ids[pick.Next(containers)]).ToArray();
    await TimeAsync("events of one of 100 recently read containers", _ => new AuditFilter
    { Streams = ["container-" + recent[pick.Next(recent.Length)]], Limit = AuditQuery.MaxLimit });
    await TimeAsync("events of one container, last 24 h", _ => new AuditFilter
    { Streams = ["container-" + ids[pick.Next(containers)]], Since = DateTimeOffset.UtcNow.AddDays(-1), Limit = AuditQuery.MaxLimit });
    var story = await TimeAsync("one correlation id (docker run: created + started)", _ => new AuditFilter
    { CorrelationId = correlations[pick.Next(correlations.Count)], Limit = 100 });
    await TimeAsync("user + type, 1 h window, page of 100", _ =>
    {
        var from = start.AddHours(pick.Next(24 * 29));
        return new AuditFilter { User = users[pick.Next(users.Length)], Types = ["container_started"], Since = from, Until = from.AddHours(1), Limit = 100 };
    });
    await TimeAsync("node, newest page of 100 (desc)", _ => new AuditFilter { Node = nodes[pick.Next(3)], Descending = true, Limit = 100 });

    await using (var conn = new NpgsqlConnection(cs))
    {
        await conn.OpenAsync(ct);
        await using var explain = new NpgsqlCommand(
            $"EXPLAIN ANALYZE SELECT seq_id FROM {schema}.mt_events WHERE stream_id = @s ORDER BY seq_id LIMIT 1001", conn);
        explain.Parameters.AddWithValue("s", "container-" + ids[0]);
        Console.WriteLine();
        Console.WriteLine("plan of 'events of one container':");
        await using var reader = await explain.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct)) Console.WriteLine("  " + reader.GetString(0));
    }
    Console.WriteLine();
    Console.WriteLine($"target: events of one container p99 <= 20 ms -> {(one.P99 <= 20 ? "met" : "NOT met")} ({one.P99:F2} ms); " +
                      $"correlation p99 {story.P99:F2} ms; load average at end {BenchStats.LoadAverage()}");
    return one.P99 <= 20 ? 0 : 1;
}
finally
{
    NpgsqlConnection.ClearAllPools();
    if (embedded is not null) await embedded.DisposeAsync();
    try { if (Directory.Exists(root)) Directory.Delete(root, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
}

static string? Arg(string name)
{
    var args = Environment.GetCommandLineArgs();
    var i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
}

static int ArgInt(string name, int fallback) =>
    Arg(name) is { } text ? int.Parse(text, NumberStyles.Integer, CultureInfo.InvariantCulture) : fallback;
