// Event-append throughput: the entity path (command -> sharded ContainerEntity -> MartenEventJournal)
// and the journal on its own, against raw Npgsql (single INSERTs, binary COPY) into a comparable table,
// all in one run on one PostgreSQL server. See bench/README.md.
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Akka.Actor;
using Akka.Hosting;
using Flotilla.Cli.Hosting;
using Flotilla.Cluster.Containers;
using Flotilla.Cluster.EventStore;
using Flotilla.Cluster.Hosting;
using Flotilla.Cluster.Nodes;
using Flotilla.Contracts;
using Flotilla.Contracts.Containers;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;

namespace Flotilla.Bench;

public static class Program
{
    private const int BatchSize = 100;
    /// <summary>Batch rows write this many times --events: n/100 appends alone finish too fast to time.</summary>
    private const int BatchFactor = 5;
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(30);

    public static async Task<int> Main(string[] args)
    {
        BenchOptions options;
        try
        {
            options = BenchOptions.Parse(args);
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine(e.Message);
            Console.Error.WriteLine(BenchOptions.Usage);
            return 2;
        }
        if (options.Help)
        {
            Console.WriteLine(BenchOptions.Usage);
            return 0;
        }

        // Akka's logger writes INFO lines (cluster start/stop) to stdout; keep the report readable.
        Console.SetOut(new Flotilla.Bench.Common.InfoFilter(Console.Out));

        using var cts = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            cts.Cancel();
        };

        await using var database = await BenchDatabase.CreateAsync(options.Postgres, cts.Token);
        try
        {
            var results = await RunAsync(options, database, cts.Token);
            Report.Print(options, database, results);
            return 0;
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested)
        {
            Console.Error.WriteLine("cancelled");
            return 130;
        }
    }

    private static async Task<List<Result>> RunAsync(BenchOptions o, BenchDatabase db, CancellationToken ct)
    {
        var n = o.Events;
        var results = new List<Result>();
        Console.WriteLine($"Flotilla append benchmark: {n} events per measurement, batch {BatchSize}, " +
            $"{Environment.ProcessorCount} cores, PostgreSQL: {db.Description}");
        Console.WriteLine($"load average at start: {LoadAverage()}");

        // (a) Entity path: a real single-node cluster host, commands asked of the sharding region.
        Console.WriteLine("[entity] starting single-node cluster host ...");
        using (var host = BuildHost(db.ConnectionString))
        {
            await host.StartAsync(ct);
            try
            {
                var region = host.Services.GetRequiredService<IRequiredActor<ContainerEntity>>().ActorRef;
                await EntityPath.WarmUpAsync(region, ct);
                foreach (var clients in new[] { 1, 8 })
                {
                    Console.WriteLine($"[entity] {clients} client(s) ...");
                    results.AddRange(await EntityPath.RunAsync(region, n, clients, ct));
                }
                // The same journal instance the entities use, called directly with the host still up:
                // separates the actor/sharding overhead from the store's own cost.
                Console.WriteLine("[journal] single appends through the host's journal (host running) ...");
                var hostJournal = host.Services.GetRequiredService<IEventJournal>();
                await JournalPath.SinglesAsync(hostJournal, "warm-jh", 40, ct);
                results.Add(await JournalPath.SinglesAsync(hostJournal, "bench-jh", n, ct) with
                {
                    Key = "journal-single-host",
                    Name = "journal: single appends, host's journal, host up",
                });
            }
            finally
            {
                await host.StopAsync(CancellationToken.None);
            }
        }

        // (b) The journal on its own (same Marten configuration, same schema).
        await using (var store = FlotillaStore.Create(db.ConnectionString))
        {
            var journal = new MartenEventJournal(store);
            Console.WriteLine("[journal] warm-up ...");
            await JournalPath.SinglesAsync(journal, "warm-j", 40, ct);
            await JournalPath.BatchesAsync(journal, "warm-jb", 2 * BatchSize, ct);
            Console.WriteLine("[journal] single appends ...");
            results.Add(await JournalPath.SinglesAsync(journal, "bench-j", n, ct));
            Console.WriteLine("[journal] batches ...");
            results.Add(await JournalPath.BatchesAsync(journal, "bench-jb", BatchFactor * n, ct));

            // The same journal without hash chaining: what tamper evidence costs per append.
            var unchained = new MartenEventJournal(store, chainHashes: false);
            Console.WriteLine("[journal] single appends and batches, hash chaining off ...");
            results.Add(await JournalPath.SinglesAsync(unchained, "bench-ju", n, ct) with
            {
                Key = "journal-single-unchained",
                Name = "journal: single appends, hash chaining off",
            });
            results.Add(await JournalPath.BatchesAsync(unchained, "bench-jub", BatchFactor * n, ct) with
            {
                Key = "journal-batch-unchained",
                Name = "journal: batches, hash chaining off",
            });
        }

        // (c) Raw Npgsql peer into a comparable table.
        await RawPath.CreateTableAsync(db.ConnectionString, ct);
        Console.WriteLine("[raw] warm-up ...");
        await RawPath.InsertsAsync(db.ConnectionString, "warm-r", 40, 1, ct);
        await RawPath.CopyAsync(db.ConnectionString, "warm-rc", 2 * BatchSize, ct);
        Console.WriteLine("[raw] single INSERTs ...");
        results.Add(await RawPath.InsertsAsync(db.ConnectionString, "bench-r", n, 1, ct));
        results.Add(await RawPath.InsertsAsync(db.ConnectionString, "bench-r8", n, 8, ct));
        Console.WriteLine("[raw] binary COPY batches ...");
        results.Add(await RawPath.CopyAsync(db.ConnectionString, "bench-rc", BatchFactor * n, ct));

        await Verify.CountsAsync(db.ConnectionString, results, ct);
        return results;
    }

    private static IHost BuildHost(string connectionString)
    {
        var options = new FlotillaClusterOptions
        {
            NodeName = "bench-node",
            Roles = [FlotillaClusterOptions.NodeRole, FlotillaClusterOptions.GatewayRole],
            BindHost = "127.0.0.1",
            BindPort = 0,
            PostgresConnectionString = connectionString,
        };
        var self = new NodeDescription("bench-node", Environment.MachineName, options.Roles, Environment.ProcessorCount,
            1L << 30, "bench", "bench", new Dictionary<string, string>());
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddFlotillaCluster(options, self);
        return builder.Build();
    }

    // ---------------------------------------------------------------------------------------------

    /// <summary>One measured row: events written, wall time, per-operation latencies (ms).</summary>
    public sealed record Result(string Key, string Name, int Clients, long Events, int Operations, TimeSpan Elapsed,
        double[] LatenciesMs, string Table)
    {
        public double EventsPerSecond => Events / Elapsed.TotalSeconds;
        public double P50 => Percentile(0.50);
        public double P99 => Percentile(0.99);

        private double Percentile(double p)
        {
            if (LatenciesMs.Length == 0) return double.NaN;
            var sorted = LatenciesMs.Order().ToArray();
            var rank = (int)Math.Ceiling(p * sorted.Length) - 1;
            return sorted[Math.Clamp(rank, 0, sorted.Length - 1)];
        }
    }

    private static class EntityPath
    {
        private static readonly IReadOnlyDictionary<string, string> Labels = new Dictionary<string, string> { ["bench"] = "1" };

        public static async Task WarmUpAsync(IActorRef region, CancellationToken ct)
        {
            // The cluster forms and the shard coordinator starts on the first message; retry until it answers.
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            while (true)
            {
                try
                {
                    await Send(region, Create("warm-e-0"), ct);
                    break;
                }
                catch (Exception) when (DateTime.UtcNow < deadline && !ct.IsCancellationRequested)
                {
                    await Task.Delay(500, ct);
                }
            }
            await Send(region, new RenameContainer("warm-e-0", "warm-e-0-renamed", Origin()), ct);
            await Task.WhenAll(Enumerable.Range(1, 40).Select(async i =>
            {
                var id = $"warm-e-{i}";
                await Send(region, Create(id), ct);
                await Send(region, new RenameContainer(id, id + "-renamed", Origin()), ct);
            }));
        }

        /// <summary>
        /// n/2 containers split over the clients; phase 1 creates them (activation + replay of an empty
        /// stream + one append), phase 2 renames them (one append on a live entity). Each command is
        /// exactly one event appended with the entity's expected version.
        /// </summary>
        public static async Task<IEnumerable<Result>> RunAsync(IActorRef region, int n, int clients, CancellationToken ct)
        {
            var containers = n / 2;
            var prefix = $"bench-e{clients}";
            var createLat = new double[containers];
            var renameLat = new double[containers];

            var sw = Stopwatch.StartNew();
            await ForClients(clients, containers, async i =>
            {
                var t = Stopwatch.GetTimestamp();
                await Send(region, Create($"{prefix}-{i}"), ct);
                createLat[i] = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
            });
            var createElapsed = sw.Elapsed;

            sw.Restart();
            await ForClients(clients, containers, async i =>
            {
                var t = Stopwatch.GetTimestamp();
                await Send(region, new RenameContainer($"{prefix}-{i}", $"{prefix}-{i}-renamed", Origin()), ct);
                renameLat[i] = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
            });
            var renameElapsed = sw.Elapsed;

            const string table = "flotilla.mt_events";
            return
            [
                new Result($"entity-{clients}", $"entity: create+rename, {clients} client(s)", clients, 2L * containers,
                    2 * containers, createElapsed + renameElapsed, [.. createLat, .. renameLat], table),
                new Result($"entity-{clients}-create", "  of which create (activation + replay + append)", clients,
                    containers, containers, createElapsed, createLat, table),
                new Result($"entity-{clients}-rename", "  of which rename (append on a live entity)", clients,
                    containers, containers, renameElapsed, renameLat, table),
            ];
        }

        private static CreateContainer Create(string id) =>
            new(id, id, ContainerDefinition.Minimal("busybox:latest", "sha256:" + new string('0', 64), ["sh", "-c", "sleep 3600"], ["BENCH=1"], Labels),
                "bench-node", Origin());

        private static RequestOrigin Origin() => new("bench", Guid.NewGuid().ToString("N"));

        private static async Task Send(IActorRef region, object command, CancellationToken ct)
        {
            var reply = await region.Ask<object>(command, AskTimeout, ct);
            if (reply is not ContainerCommandAccepted { Events.Count: 1 })
                throw new InvalidOperationException($"{command.GetType().Name} was not accepted with one event: {reply}");
        }
    }

    private static class JournalPath
    {
        private static readonly EventMetadata Metadata = new("bench", "bench-node", "bench-correlation", null);

        /// <summary>n/2 streams, each: StartStream with ContainerCreated, then ContainerRenamed at expected version 1.</summary>
        public static async Task<Result> SinglesAsync(IEventJournal journal, string prefix, int n, CancellationToken ct)
        {
            var streams = n / 2;
            var lat = new double[2 * streams];
            var sw = Stopwatch.StartNew();
            for (var i = 0; i < streams; i++)
            {
                var id = $"{prefix}-{i}";
                var t = Stopwatch.GetTimestamp();
                await journal.AppendAsync(ContainerStreams.Key(id), 0, [Events.Created(id)], Metadata, ct);
                lat[2 * i] = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
                t = Stopwatch.GetTimestamp();
                await journal.AppendAsync(ContainerStreams.Key(id), 1, [Events.Renamed(id, 1)], Metadata, ct);
                lat[2 * i + 1] = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
            }
            return new Result("journal-single", "journal: single-event appends, sequential", 1, 2L * streams, 2 * streams,
                sw.Elapsed, lat, "flotilla.mt_events");
        }

        /// <summary>n/100 appends of 100 events; each stream gets two batches (start at 0, then append at 100).</summary>
        public static async Task<Result> BatchesAsync(IEventJournal journal, string prefix, int n, CancellationToken ct)
        {
            var batches = Math.Max(1, n / BatchSize);
            var lat = new double[batches];
            var sw = Stopwatch.StartNew();
            for (var b = 0; b < batches; b++)
            {
                var id = $"{prefix}-{b / 2}";
                var expected = (b % 2) * BatchSize;
                var t = Stopwatch.GetTimestamp();
                await journal.AppendAsync(ContainerStreams.Key(id), expected, Events.Batch(id, expected), Metadata, ct);
                lat[b] = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
            }
            return new Result("journal-batch", $"journal: batches of {BatchSize} events, sequential", 1,
                (long)batches * BatchSize, batches, sw.Elapsed, lat, "flotilla.mt_events");
        }
    }

    /// <summary>The same event bodies for the journal and the raw peer.</summary>
    private static class Events
    {
        private static readonly IReadOnlyDictionary<string, string> Labels = new Dictionary<string, string> { ["bench"] = "1" };

        public static ContainerCreated Created(string id) =>
            new(id, id, ContainerDefinition.Minimal("busybox:latest", "sha256:" + new string('0', 64), ["sh", "-c", "sleep 3600"], ["BENCH=1"], Labels),
                "bench-node", DateTimeOffset.UtcNow);

        public static ContainerRenamed Renamed(string id, long version) =>
            new(id, $"{id}-{version - 1}", $"{id}-{version}", DateTimeOffset.UtcNow);

        /// <summary>100 events that continue a stream at <paramref name="from"/> (a Created first if the stream is new).</summary>
        public static IReadOnlyList<object> Batch(string id, long from) =>
            [.. Enumerable.Range(0, BatchSize).Select(k => from + k == 0 ? (object)Created(id) : Renamed(id, from + k))];

        public static string TypeName(object e) => e switch
        {
            ContainerCreated => "container_created",
            ContainerRenamed => "container_renamed",
            _ => e.GetType().Name,
        };
    }

    private static class RawPath
    {
        private const string Table = "bench_raw.events";
        private const string Headers = """{"node": "bench-node"}""";

        public static async Task CreateTableAsync(string cs, CancellationToken ct)
        {
            await using var conn = new NpgsqlConnection(cs);
            await conn.OpenAsync(ct);
            // The columns of a stored event, with the (stream, version) uniqueness that makes the
            // expected version stick, and the server's clock for the timestamp (as Rich appends do).
            await using var cmd = new NpgsqlCommand($"""
                create schema if not exists bench_raw;
                drop table if exists {Table};
                create table {Table} (
                    id             bigserial   primary key,
                    stream_id      text        not null,
                    version        int         not null,
                    type           text        not null,
                    data           jsonb       not null,
                    timestamp      timestamptz not null default now(),
                    correlation_id text,
                    causation_id   text,
                    user_name      text,
                    headers        jsonb,
                    unique (stream_id, version)
                );
                """, conn);
            await cmd.ExecuteNonQueryAsync(ct);
        }

        /// <summary>One autocommitted single-row INSERT per event (n/2 streams x versions 1, 2), spread over clients.</summary>
        public static async Task<Result> InsertsAsync(string cs, string prefix, int n, int clients, CancellationToken ct)
        {
            var streams = n / 2;
            var lat = new double[2 * streams];
            var sw = Stopwatch.StartNew();
            await Task.WhenAll(Enumerable.Range(0, clients).Select(async c =>
            {
                await using var conn = new NpgsqlConnection(cs);
                await conn.OpenAsync(ct);
                await using var cmd = new NpgsqlCommand(
                    $"insert into {Table} (stream_id, version, type, data, correlation_id, causation_id, user_name, headers) " +
                    "values ($1, $2, $3, $4, $5, $6, $7, $8)", conn);
                cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Text });
                cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Integer });
                cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Text });
                cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Jsonb });
                cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Text });
                cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Text });
                cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Text });
                cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Jsonb });
                await cmd.PrepareAsync(ct);
                for (var i = c; i < streams; i += clients)
                {
                    var id = $"{prefix}-{i}";
                    for (var v = 1; v <= 2; v++)
                    {
                        object e = v == 1 ? Events.Created(id) : Events.Renamed(id, v);
                        var t = Stopwatch.GetTimestamp();
                        cmd.Parameters[0].Value = ContainerStreams.Key(id);
                        cmd.Parameters[1].Value = v;
                        cmd.Parameters[2].Value = Events.TypeName(e);
                        cmd.Parameters[3].Value = JsonSerializer.Serialize(e, e.GetType());
                        cmd.Parameters[4].Value = Guid.NewGuid().ToString("N");
                        cmd.Parameters[5].Value = DBNull.Value;
                        cmd.Parameters[6].Value = "bench";
                        cmd.Parameters[7].Value = Headers;
                        await cmd.ExecuteNonQueryAsync(ct);
                        lat[2 * i + v - 1] = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
                    }
                }
            }));
            var name = clients == 1 ? "raw: single-row INSERTs, sequential" : $"raw: single-row INSERTs, {clients} connections";
            return new Result(clients == 1 ? "raw-insert" : $"raw-insert-{clients}", name, clients, 2L * streams,
                2 * streams, sw.Elapsed, lat, Table);
        }

        /// <summary>n/100 binary COPYs of 100 rows each (each one statement, one commit), sequential.</summary>
        public static async Task<Result> CopyAsync(string cs, string prefix, int n, CancellationToken ct)
        {
            var batches = Math.Max(1, n / BatchSize);
            var lat = new double[batches];
            await using var conn = new NpgsqlConnection(cs);
            await conn.OpenAsync(ct);
            var sw = Stopwatch.StartNew();
            for (var b = 0; b < batches; b++)
            {
                var id = $"{prefix}-{b / 2}";
                var from = (b % 2) * BatchSize;
                var t = Stopwatch.GetTimestamp();
                var events = Events.Batch(id, from);
                await using (var writer = await conn.BeginBinaryImportAsync(
                    $"copy {Table} (stream_id, version, type, data, correlation_id, causation_id, user_name, headers) " +
                    "from stdin (format binary)", ct))
                {
                    var correlation = Guid.NewGuid().ToString("N");
                    for (var k = 0; k < events.Count; k++)
                    {
                        var e = events[k];
                        await writer.StartRowAsync(ct);
                        await writer.WriteAsync(ContainerStreams.Key(id), NpgsqlDbType.Text, ct);
                        await writer.WriteAsync(from + k + 1, NpgsqlDbType.Integer, ct);
                        await writer.WriteAsync(Events.TypeName(e), NpgsqlDbType.Text, ct);
                        await writer.WriteAsync(JsonSerializer.Serialize(e, e.GetType()), NpgsqlDbType.Jsonb, ct);
                        await writer.WriteAsync(correlation, NpgsqlDbType.Text, ct);
                        await writer.WriteNullAsync(ct);
                        await writer.WriteAsync("bench", NpgsqlDbType.Text, ct);
                        await writer.WriteAsync(Headers, NpgsqlDbType.Jsonb, ct);
                    }
                    await writer.CompleteAsync(ct);
                }
                lat[b] = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
            }
            return new Result("raw-copy", $"raw: binary COPY, batches of {BatchSize}, sequential", 1,
                (long)batches * BatchSize, batches, sw.Elapsed, lat, Table);
        }
    }

    /// <summary>Checks that every measured event really is in its table (a benchmark that lost writes would flatter).</summary>
    private static class Verify
    {
        public static async Task CountsAsync(string cs, IEnumerable<Result> results, CancellationToken ct)
        {
            await using var conn = new NpgsqlConnection(cs);
            await conn.OpenAsync(ct);
            var prefixes = new (string Key, string Table, string Like)[]
            {
                ("entity-1", "flotilla.mt_events", "container-bench-e1-%"),
                ("entity-8", "flotilla.mt_events", "container-bench-e8-%"),
                ("journal-single", "flotilla.mt_events", "container-bench-j-%"),
                ("journal-single-host", "flotilla.mt_events", "container-bench-jh-%"),
                ("journal-batch", "flotilla.mt_events", "container-bench-jb-%"),
                ("journal-single-unchained", "flotilla.mt_events", "container-bench-ju-%"),
                ("journal-batch-unchained", "flotilla.mt_events", "container-bench-jub-%"),
                ("raw-insert", "bench_raw.events", "container-bench-r-%"),
                ("raw-insert-8", "bench_raw.events", "container-bench-r8-%"),
                ("raw-copy", "bench_raw.events", "container-bench-rc-%"),
            };
            var byKey = results.ToDictionary(r => r.Key);
            foreach (var (key, table, like) in prefixes)
            {
                await using var cmd = new NpgsqlCommand($"select count(*) from {table} where stream_id like $1", conn);
                cmd.Parameters.AddWithValue(like);
                var count = (long)(await cmd.ExecuteScalarAsync(ct))!;
                if (count != byKey[key].Events)
                    throw new InvalidOperationException($"{key}: {byKey[key].Events} events measured but {count} rows in {table}");
            }
        }
    }

    public static string LoadAverage()
    {
        try
        {
            return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
        }
        catch (IOException)
        {
            return "n/a";
        }
    }

    private static async Task ForClients(int clients, int items, Func<int, Task> body) =>
        await Task.WhenAll(Enumerable.Range(0, clients).Select(async c =>
        {
            for (var i = c; i < items; i += clients) await body(i);
        }));

    private static class Report
    {
        public static void Print(BenchOptions o, BenchDatabase db, List<Result> results)
        {
            var inv = CultureInfo.InvariantCulture;
            var r = results.ToDictionary(x => x.Key);
            Console.WriteLine();
            Console.WriteLine($"{"measurement",-52} {"clients",7} {"events",7} {"seconds",8} {"events/s",9} {"p50 ms",7} {"p99 ms",7}");
            Console.WriteLine(new string('-', 103));
            foreach (var x in results)
            {
                Console.WriteLine(string.Format(inv, "{0,-52} {1,7} {2,7} {3,8:F2} {4,9:N0} {5,7:F2} {6,7:F2}",
                    x.Name, x.Clients, x.Events, x.Elapsed.TotalSeconds, x.EventsPerSecond, x.P50, x.P99));
            }
            Console.WriteLine($"load average at end: {LoadAverage()} (other work on this machine skews every row)");
            Console.WriteLine("latency = per command (entity), per append call (journal), per statement (raw); batch rows: per 100 events");
            Console.WriteLine();

            double Ratio(string a, string b) => r[a].EventsPerSecond / r[b].EventsPerSecond;
            var ratios = new (string Label, double Value)[]
            {
                ("entity path (1 client) / raw single INSERT", Ratio("entity-1", "raw-insert")),
                ("entity rename only (1 client) / raw single INSERT", Ratio("entity-1-rename", "raw-insert")),
                ("entity path (8 clients) / raw INSERT (8 connections)", Ratio("entity-8", "raw-insert-8")),
                ("journal single append / raw single INSERT", Ratio("journal-single", "raw-insert")),
                ("entity path (1 client) / journal single append", Ratio("entity-1", "journal-single")),
                ($"journal batch {BatchSize} / raw COPY batch {BatchSize}", Ratio("journal-batch", "raw-copy")),
                ("hash-chained / unchained single append (goal >= 0.90)", Ratio("journal-single", "journal-single-unchained")),
                ($"hash-chained / unchained batch {BatchSize} (goal >= 0.90)", Ratio("journal-batch", "journal-batch-unchained")),
            };
            Console.WriteLine("ratios (events/s, higher = closer to the raw peer):");
            foreach (var (label, value) in ratios)
                Console.WriteLine(string.Format(inv, "  {0,-56} {1,6:F2}x", label, value));
            Console.WriteLine();
            Console.WriteLine(string.Format(inv,
                "SUMMARY events={0} entity1={1:F0}/s entity8={2:F0}/s journal1={3:F0}/s rawInsert1={4:F0}/s " +
                "entity1/rawInsert={5:F2} journalBatch={6:F0}/s rawCopy={7:F0}/s journalBatch/rawCopy={8:F2} pg={9} " +
                "hashChainCost single={10:F2} batch={11:F2}",
                o.Events, r["entity-1"].EventsPerSecond, r["entity-8"].EventsPerSecond, r["journal-single"].EventsPerSecond,
                r["raw-insert"].EventsPerSecond, Ratio("entity-1", "raw-insert"), r["journal-batch"].EventsPerSecond,
                r["raw-copy"].EventsPerSecond, Ratio("journal-batch", "raw-copy"), db.Kind,
                Ratio("journal-single", "journal-single-unchained"), Ratio("journal-batch", "journal-batch-unchained")));
        }
    }
}

public sealed record BenchOptions(int Events, bool Quick, string? Postgres, bool Help)
{
    public const string Usage = """
        usage: Flotilla.Bench [--events N] [--quick] [--postgres CONNECTION_STRING]
          --events N      events per measurement (default 2000; rounded down to a multiple of 200, at least 200);
                          the two batch-of-100 rows write 5 x N
          --quick         small run for CI smoke tests (200 events)
          --postgres CS   use this server (a fresh database is created on it and dropped afterwards)
                          instead of a private embedded PostgreSQL 15; env FLOTILLA_BENCH_POSTGRES works too
        """;

    public static BenchOptions Parse(string[] args)
    {
        int? events = null;
        var quick = false;
        var help = false;
        var postgres = Environment.GetEnvironmentVariable("FLOTILLA_BENCH_POSTGRES");
        for (var i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--events":
                    events = int.TryParse(Next(), NumberStyles.None, CultureInfo.InvariantCulture, out var e) && e >= 200
                        ? e : throw new ArgumentException("--events must be an integer >= 200");
                    break;
                case "--quick": quick = true; break;
                case "--postgres": postgres = Next(); break;
                case "-h" or "--help": help = true; break;
                default: throw new ArgumentException($"unknown argument {args[i]}");
            }
        }
        var n = events ?? (quick ? 200 : 2000);
        // Whole batches of 100, and pairs (create + rename) split evenly.
        n = Math.Max(200, n / 200 * 200);
        return new BenchOptions(n, quick, string.IsNullOrWhiteSpace(postgres) ? null : postgres, help);
    }
}

/// <summary>A fresh database for one run: on a private embedded server (deleted afterwards) or on a given one (dropped afterwards).</summary>
public sealed class BenchDatabase : IAsyncDisposable
{
    private readonly EmbeddedPostgres? _embedded;
    private readonly string? _tempRoot;
    private readonly string? _serverConnectionString;
    private readonly string _name;

    private BenchDatabase(string connectionString, string name, EmbeddedPostgres? embedded, string? tempRoot,
        string? serverConnectionString, string description)
    {
        ConnectionString = connectionString;
        _name = name;
        _embedded = embedded;
        _tempRoot = tempRoot;
        _serverConnectionString = serverConnectionString;
        Description = description;
    }

    public string ConnectionString { get; }
    public string Description { get; }
    public string Kind => _embedded is null ? "external" : "embedded";

    public static async Task<BenchDatabase> CreateAsync(string? serverConnectionString, CancellationToken ct)
    {
        var name = $"flotilla_bench_{DateTime.UtcNow:yyyyMMddHHmmss}_{Random.Shared.Next(1000, 9999)}";
        if (serverConnectionString is not null)
        {
            var cs = await EmbeddedPostgres.EnsureDatabaseAsync(serverConnectionString, name, ct);
            var version = await ServerVersionAsync(cs, ct);
            return new BenchDatabase(cs, name, null, null, serverConnectionString, $"{version}, given server, database {name}");
        }

        // Short path: the unix socket path must stay under 107 bytes.
        var root = Path.Combine(Path.GetTempPath(), $"flotilla-bench-{Guid.NewGuid():N}"[..24]);
        Console.WriteLine($"Starting embedded PostgreSQL in {root} ...");
        EmbeddedPostgres? pg = null;
        try
        {
            pg = await EmbeddedPostgres.StartAsync(root, null, ct);
            var cs = await pg.CreateDatabaseAsync(name, ct);
            var version = await ServerVersionAsync(cs, ct);
            return new BenchDatabase(cs, name, pg, root, null, $"{version}, embedded (unix socket, fsync on), database {name}");
        }
        catch
        {
            if (pg is not null) await pg.DisposeAsync();
            TryDelete(root);
            throw;
        }
    }

    private static async Task<string> ServerVersionAsync(string cs, CancellationToken ct)
    {
        await using var conn = new NpgsqlConnection(cs);
        await conn.OpenAsync(ct);
        return $"PostgreSQL {conn.PostgreSqlVersion}";
    }

    public async ValueTask DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        if (_embedded is not null)
        {
            await _embedded.DisposeAsync();
            TryDelete(_tempRoot!);
            return;
        }
        try
        {
            var admin = new NpgsqlConnectionStringBuilder(_serverConnectionString) { Pooling = false };
            await using var conn = new NpgsqlConnection(admin.ConnectionString);
            await conn.OpenAsync();
            await using var cmd = new NpgsqlCommand($"drop database if exists \"{_name}\" with (force)", conn);
            await cmd.ExecuteNonQueryAsync();
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"could not drop database {_name}: {e.Message}");
        }
    }

    private static void TryDelete(string dir)
    {
        try
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"could not delete {dir}: {e.Message}");
        }
    }
}
