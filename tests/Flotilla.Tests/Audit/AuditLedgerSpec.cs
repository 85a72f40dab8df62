using Flotilla.Cluster.Audit;
using Flotilla.Cluster.Containers;
using Flotilla.Cluster.EventStore;
using Flotilla.Cluster.Nodes;
using Flotilla.Contracts.Containers;
using Flotilla.Contracts.Nodes;
using Flotilla.Tests.Infrastructure;
using Marten;
using Npgsql;
using Xunit;

namespace Flotilla.Tests.Audit;

/// <summary>Tamper evidence: hand edits, deletions and insertions in PostgreSQL are found and named.</summary>
[Collection("postgres")]
public class AuditLedgerSpec(PostgresFixture postgres) : IAsyncLifetime
{
    private DocumentStore _store = null!;
    private MartenEventJournal _journal = null!;
    private AuditLedger _ledger = null!;
    private string _connectionString = "";
    private static readonly EventMetadata Meta = new("alice", "node-a", "req-1", null);

    public async Task InitializeAsync()
    {
        _connectionString = await postgres.NewDatabaseAsync("audit_ledger");
        _store = FlotillaStore.Create(_connectionString);
        await _store.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
        _journal = new MartenEventJournal(_store);
        _ledger = new AuditLedger(_store);
    }

    public Task DisposeAsync()
    {
        _store.Dispose();
        return Task.CompletedTask;
    }

    private static NodeJoined Joined(string name, Dictionary<string, string>? labels = null) =>
        new(name, "host-" + name, "akka.tcp://flotilla@127.0.0.1:4053", ["node"], 2, 1 << 30, "6.1", "runc", labels ?? [], DateTimeOffset.UtcNow);

    /// <summary>Three streams: n1 with 3 events, n2 with 2, n3 with 1.</summary>
    private async Task SeedAsync()
    {
        var v = await _journal.AppendAsync("node-n1", 0, [Joined("n1", new() { ["zone"] = "a", ["disk"] = "ssd" })], Meta);
        v = await _journal.AppendAsync("node-n1", v, [new NodeLeft("n1", "shutdown", DateTimeOffset.UtcNow), Joined("n1")], Meta);
        await _journal.AppendAsync("node-n2", 0, [Joined("n2"), new NodeLeft("n2", "down", DateTimeOffset.UtcNow)], Meta with { CausationId = "c-9" });
        await _journal.AppendAsync("node-n3", 0, [Joined("n3")], Meta);
    }

    private async Task SqlAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(_connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    [Fact]
    public async Task An_untouched_store_verifies_including_label_maps_that_jsonb_reorders()
    {
        await SeedAsync();
        var result = await _ledger.VerifyAsync();
        Assert.True(result.Intact, string.Join("\n", result.Problems));
        Assert.Equal(6, result.Events);
        Assert.Equal(3, result.Streams);
        Assert.Equal(0, result.UnchainedEvents);
    }

    [Fact]
    public async Task An_edited_body_is_named_by_stream_and_version_once()
    {
        await SeedAsync();
        await SqlAsync("UPDATE flotilla.mt_events SET data = jsonb_set(data, '{Reason}', '\"maintenance\"') WHERE stream_id = 'node-n1' AND version = 2");

        var problem = Assert.Single((await _ledger.VerifyAsync()).Problems);
        Assert.Equal(("edited", "node-n1", 2L), (problem.Kind, problem.Stream, problem.Version!.Value));
    }

    [Fact]
    public async Task Edited_metadata_is_caught_too()
    {
        await SeedAsync();
        await SqlAsync("UPDATE flotilla.mt_events SET user_name = 'mallory' WHERE stream_id = 'node-n2' AND version = 1");
        var problem = Assert.Single((await _ledger.VerifyAsync()).Problems);
        Assert.Equal(("edited", "node-n2", 1L), (problem.Kind, problem.Stream, problem.Version!.Value));
    }

    [Fact]
    public async Task A_deleted_event_in_the_middle_or_at_the_end_is_caught()
    {
        await SeedAsync();
        await SqlAsync("DELETE FROM flotilla.mt_events WHERE stream_id = 'node-n1' AND version = 2");
        await SqlAsync("DELETE FROM flotilla.mt_events WHERE stream_id = 'node-n2' AND version = 2");

        var problems = (await _ledger.VerifyAsync()).Problems;
        Assert.Contains(problems, p => p is { Kind: "deleted", Stream: "node-n1", Version: 2 });
        Assert.Contains(problems, p => p is { Kind: "deleted", Stream: "node-n2", Version: 2 });
        Assert.Equal(2, problems.Count);
    }

    [Fact]
    public async Task An_event_inserted_by_hand_is_caught()
    {
        await SeedAsync();
        // A copy of n3's first event as its second, written straight into the table (no valid hash).
        await SqlAsync("""
            INSERT INTO flotilla.mt_events (seq_id, id, stream_id, version, data, type, timestamp, tenant_id, mt_dotnet_type, headers, user_name, correlation_id)
            SELECT nextval('flotilla.mt_events_sequence'), gen_random_uuid(), stream_id, 2, data, type, now(), tenant_id, mt_dotnet_type, headers - 'hash', user_name, correlation_id
            FROM flotilla.mt_events WHERE stream_id = 'node-n3' AND version = 1;
            UPDATE flotilla.mt_streams SET version = 2 WHERE id = 'node-n3';
            """);
        var problem = Assert.Single((await _ledger.VerifyAsync()).Problems);
        Assert.Equal(("inserted", "node-n3", 2L), (problem.Kind, problem.Stream, problem.Version!.Value));
    }

    [Fact]
    public async Task Checkpoints_chain_and_catch_a_whole_stream_removed()
    {
        await SeedAsync();
        var first = await _ledger.CheckpointAsync(DateTimeOffset.UtcNow + AuditLedger.SettleTime);
        Assert.NotNull(first);
        Assert.Equal(6, first.Count);
        await _journal.AppendAsync("node-n4", 0, [Joined("n4")], Meta);
        var second = await _ledger.CheckpointAsync(DateTimeOffset.UtcNow + AuditLedger.SettleTime);
        Assert.Equal(first.Hash, second!.PreviousHash);
        Assert.Null(await _ledger.CheckpointAsync(DateTimeOffset.UtcNow + AuditLedger.SettleTime));
        Assert.True((await _ledger.VerifyAsync()).Intact);

        // Every trace of n3 gone: no stream chain can notice, the checkpoint does.
        await SqlAsync("DELETE FROM flotilla.mt_events WHERE stream_id = 'node-n3'; DELETE FROM flotilla.mt_streams WHERE id = 'node-n3';");
        var problem = Assert.Single((await _ledger.VerifyAsync()).Problems);
        Assert.Equal("checkpoint", problem.Kind);
        Assert.Contains("deleted", problem.Detail);
    }

    [Fact]
    public async Task Events_from_before_chaining_are_counted_not_flagged()
    {
        await SeedAsync();
        await SqlAsync("UPDATE flotilla.mt_events SET headers = headers - 'hash' WHERE stream_id = 'node-n2'");
        var result = await _ledger.VerifyAsync();
        Assert.True(result.Intact, string.Join("\n", result.Problems));
        Assert.Equal(2, result.UnchainedEvents);
    }

    [Fact]
    public async Task Replay_rebuilds_read_models_equal_to_the_live_ones()
    {
        await SeedAsync();
        await using (var session = _store.QuerySession())
        {
            var before = await session.Query<NodeView>().OrderBy(n => n.Id).ToListAsync();
            await SqlAsync("DELETE FROM flotilla.mt_doc_nodeview");
            var rebuilt = await new ProjectionReplay(_store).RebuildAllAsync();
            Assert.Contains(rebuilt, r => r.Projection == nameof(NodeViewProjection));
            await using var after = _store.QuerySession();
            var again = await after.Query<NodeView>().OrderBy(n => n.Id).ToListAsync();
            Assert.Equal(System.Text.Json.JsonSerializer.Serialize(before), System.Text.Json.JsonSerializer.Serialize(again));
            Assert.Equal(3, again.Count);
        }
    }

    [Fact]
    public async Task Replay_of_containers_whose_names_were_reused_and_swapped_passes_the_unique_name_index()
    {
        // Names move between containers over time; the rebuild must never hold two rows with one name at once.
        ContainerCreated Created(string id, string name) =>
            new(id, name, ContainerDefinition.Minimal("busybox", "sha256:" + new string('a', 64), ["sh"]), "n1", DateTimeOffset.UtcNow);
        ContainerRenamed Renamed(string id, string from, string to) => new(id, from, to, DateTimeOffset.UtcNow);
        await _journal.AppendAsync("container-a", 0, [Created("a", "web")], Meta);
        // Enough events between a's create and its removal that the rebuild stores a's row in an earlier batch than the
        // one that removes it and gives its name to b.
        await _journal.AppendAsync("container-f", 0, [Created("f", "f0"), .. Enumerable.Range(1, 1500).Select(i => Renamed("f", $"f{i - 1}", $"f{i}"))], Meta);
        await _journal.AppendAsync("container-a", 1, [new ContainerRemoved("a", DateTimeOffset.UtcNow)], Meta);
        await _journal.AppendAsync("container-b", 0, [Created("b", "web")], Meta);
        await _journal.AppendAsync("container-c", 0, [Created("c", "db")], Meta);
        await _journal.AppendAsync("container-b", 1, [Renamed("b", "web", "tmp")], Meta);
        await _journal.AppendAsync("container-c", 1, [Renamed("c", "db", "web")], Meta);
        await _journal.AppendAsync("container-b", 2, [Renamed("b", "tmp", "db")], Meta);

        await SqlAsync("DELETE FROM flotilla.mt_doc_containerview");
        await new ProjectionReplay(_store).RebuildAllAsync();
        await using var session = _store.QuerySession();
        var names = (await session.Query<ContainerView>().ToListAsync()).ToDictionary(c => c.ContainerId, c => c.Name);
        Assert.Equal(new Dictionary<string, string> { ["b"] = "db", ["c"] = "web", ["f"] = "f1500" }, names);
        // And the names are unique again afterwards.
        Assert.Equal(1, await session.AdvancedSql.QueryAsync<int>(
            $"select count(*)::int from pg_indexes where schemaname = 'flotilla' and indexname = '{FlotillaStore.ContainerNameIndex}'", CancellationToken.None) is [var n] ? n : -1);
    }
}
