using Flotilla.Cluster.Audit;
using Flotilla.Cluster.EventStore;
using Flotilla.Contracts.Nodes;
using Flotilla.Tests.Infrastructure;
using Marten;
using Npgsql;
using Xunit;

namespace Flotilla.Tests.Audit;

/// <summary>
/// Every way a row of the audit log can be changed by hand in PostgreSQL, one row per case: the chain covers the stored
/// body as a reader sees it (fields added, removed or renamed too, not only changed values) and every metadata column.
/// Regression for issue 15 item 5: `jsonb_set(data, '{tampered}', 'true')` verified OK because the hash was checked
/// against the body as read back into its record, which drops fields the record does not have.
/// </summary>
[Collection("postgres")]
public class AuditTamperTableSpec(PostgresFixture postgres) : IAsyncLifetime
{
    private DocumentStore _store = null!;
    private MartenEventJournal _journal = null!;
    private AuditLedger _ledger = null!;
    private string _connectionString = "";
    private static readonly EventMetadata Meta = new("alice", "node-a", "req-1", null);

    public async Task InitializeAsync()
    {
        _connectionString = await postgres.NewDatabaseAsync("audit_tamper");
        _store = FlotillaStore.Create(_connectionString);
        await _store.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
        _journal = new MartenEventJournal(_store);
        _ledger = new AuditLedger(_store);
        // node-n1: v1 joined (labels, ApiEndpoint ""), v2 left, v3 joined; node-n2: v1 joined, v2 left; node-n3: v1 joined.
        var v = await _journal.AppendAsync("node-n1", 0, [Joined("n1", new() { ["zone"] = "a", ["disk"] = "ssd" })], Meta);
        v = await _journal.AppendAsync("node-n1", v, [new NodeLeft("n1", "shutdown", DateTimeOffset.UtcNow), Joined("n1")], Meta);
        await _journal.AppendAsync("node-n2", 0, [Joined("n2"), new NodeLeft("n2", "down", DateTimeOffset.UtcNow)], Meta with { CausationId = "c-9" });
        await _journal.AppendAsync("node-n3", 0, [Joined("n3")], Meta);
    }

    public Task DisposeAsync()
    {
        _store.Dispose();
        return Task.CompletedTask;
    }

    private static NodeJoined Joined(string name, Dictionary<string, string>? labels = null) =>
        new(name, "host-" + name, "akka.tcp://flotilla@127.0.0.1:4053", ["node"], 2, 1 << 30, "6.1", "runc", labels ?? [], DateTimeOffset.UtcNow);

    private async Task SqlAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(_connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql.Replace("$E", "flotilla.mt_events"), connection);
        await command.ExecuteNonQueryAsync();
    }

    private const string N1V1 = "stream_id = 'node-n1' AND version = 1";

    /// <summary>Case name → SQL run against the seeded store → the problems verify must name ("" = none).</summary>
    public static TheoryData<string, string, string> Cases => new()
    {
        // The body: what a reader of the audit log sees, byte for byte up to jsonb's own normal form.
        { "field added at the top", $"UPDATE $E SET data = jsonb_set(data, '{{tampered}}', 'true') WHERE {N1V1}", "edited node-n1 1" },
        { "field added in a map", $"UPDATE $E SET data = jsonb_set(data, '{{Labels,extra}}', '\"x\"') WHERE {N1V1}", "edited node-n1 1" },
        { "field removed", $"UPDATE $E SET data = data - 'ApiEndpoint' WHERE {N1V1}", "edited node-n1 1" },
        { "field renamed", $"UPDATE $E SET data = (data - 'ApiEndpoint') || jsonb_build_object('Endpoint', data -> 'ApiEndpoint') WHERE {N1V1}", "edited node-n1 1" },
        { "value changed", $"UPDATE $E SET data = jsonb_set(data, '{{Kernel}}', '\"5.4\"') WHERE {N1V1}", "edited node-n1 1" },
        { "number respelled", $"UPDATE $E SET data = jsonb_set(data, '{{Cpus}}', '2.0') WHERE {N1V1}", "edited node-n1 1" },
        { "fields reordered (jsonb keeps its own order: nothing a reader sees changes)",
            $"UPDATE $E SET data = (SELECT jsonb_object_agg(key, value ORDER BY key DESC) FROM jsonb_each(data)) WHERE {N1V1}", "" },
        { "same body rewritten", $"UPDATE $E SET data = (data::text)::jsonb WHERE {N1V1}", "" },
        // The metadata columns.
        { "user", $"UPDATE $E SET user_name = 'mallory' WHERE {N1V1}", "edited node-n1 1" },
        { "correlation", $"UPDATE $E SET correlation_id = 'req-2' WHERE {N1V1}", "edited node-n1 1" },
        { "causation set", $"UPDATE $E SET causation_id = 'c-1' WHERE {N1V1}", "edited node-n1 1" },
        { "causation cleared", "UPDATE $E SET causation_id = NULL WHERE stream_id = 'node-n2' AND version = 1", "edited node-n2 1" },
        { "timestamp", $"UPDATE $E SET timestamp = timestamp - interval '1 hour' WHERE {N1V1}", "edited node-n1 1" },
        { "timestamp by a microsecond", $"UPDATE $E SET timestamp = timestamp + interval '1 microsecond' WHERE {N1V1}", "edited node-n1 1" },
        { "type", $"UPDATE $E SET type = 'node_activated' WHERE {N1V1}", "edited node-n1 1" },
        { "node header", $"UPDATE $E SET headers = jsonb_set(headers, '{{node}}', '\"node-b\"') WHERE {N1V1}", "edited node-n1 1" },
        { "header added", $"UPDATE $E SET headers = jsonb_set(headers, '{{via}}', '\"x\"') WHERE {N1V1}", "edited node-n1 1" },
        { "stream: the event moved to another stream",
            "UPDATE $E SET stream_id = 'node-n1', version = 4 WHERE stream_id = 'node-n2' AND version = 2; UPDATE flotilla.mt_streams SET version = 4 WHERE id = 'node-n1'",
            "deleted node-n2 2; edited node-n1 4" },
        { "version", "UPDATE $E SET version = 5 WHERE stream_id = 'node-n1' AND version = 3; UPDATE flotilla.mt_streams SET version = 5 WHERE id = 'node-n1'",
            "deleted node-n1 3" },
        // Rows.
        { "row deleted in the middle", "DELETE FROM $E WHERE stream_id = 'node-n1' AND version = 2", "deleted node-n1 2" },
        { "newest row deleted", "DELETE FROM $E WHERE stream_id = 'node-n2' AND version = 2", "deleted node-n2 2" },
        { "row inserted without a hash", """
            INSERT INTO $E (seq_id, id, stream_id, version, data, type, timestamp, tenant_id, mt_dotnet_type, headers, user_name, correlation_id)
            SELECT nextval('flotilla.mt_events_sequence'), gen_random_uuid(), stream_id, 2, data, type, now(), tenant_id, mt_dotnet_type, headers - 'hash', user_name, correlation_id
            FROM $E WHERE stream_id = 'node-n3' AND version = 1;
            UPDATE flotilla.mt_streams SET version = 2 WHERE id = 'node-n3';
            """, "inserted node-n3 2" },
        { "row inserted with a copied hash", """
            INSERT INTO $E (seq_id, id, stream_id, version, data, type, timestamp, tenant_id, mt_dotnet_type, headers, user_name, correlation_id)
            SELECT nextval('flotilla.mt_events_sequence'), gen_random_uuid(), stream_id, 2, data, type, timestamp, tenant_id, mt_dotnet_type, headers, user_name, correlation_id
            FROM $E WHERE stream_id = 'node-n3' AND version = 1;
            UPDATE flotilla.mt_streams SET version = 2 WHERE id = 'node-n3';
            """, "edited node-n3 2" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task A_hand_edit_is_named_or_a_harmless_one_passes(string change, string sql, string expected)
    {
        Assert.True((await _ledger.VerifyAsync()).Intact, "before: " + change);
        await SqlAsync(sql);
        var result = await _ledger.VerifyAsync();
        var found = string.Join("; ", result.Problems.Select(p => $"{p.Kind} {p.Stream} {p.Version}").Order(StringComparer.Ordinal));
        Assert.True(expected == found, $"{change}: expected [{expected}], verify said [{found}]\n{string.Join("\n", result.Problems)}");
    }

    [Fact]
    public async Task A_whole_stream_removed_after_a_checkpoint_is_named_by_the_checkpoint()
    {
        Assert.NotNull(await _ledger.CheckpointAsync(DateTimeOffset.UtcNow + AuditLedger.SettleTime));
        await SqlAsync("DELETE FROM $E WHERE stream_id = 'node-n3'; DELETE FROM flotilla.mt_streams WHERE id = 'node-n3';");
        var problem = Assert.Single((await _ledger.VerifyAsync()).Problems);
        Assert.Equal("checkpoint", problem.Kind);
        Assert.Contains("deleted", problem.Detail);
    }

    /// <summary>
    /// A store written before format 2 (its hashes rewritten here to what format 1 computed): it still verifies, its
    /// events are counted as format 1, an edit of a value is still caught, and new events chain on in format 2.
    /// </summary>
    [Fact]
    public async Task Chains_written_in_format_1_still_verify_and_new_events_chain_on_from_them()
    {
        await using (var session = _store.QuerySession())
        {
            var previous = new Dictionary<string, string>();
            foreach (var e in await session.Events.QueryAllRawEvents().OrderBy(e => e.Sequence).ToListAsync())
            {
                var hash = EventHashChain.ComputeFormat1(previous.GetValueOrDefault(e.StreamKey!, ""), e.StreamKey!, e.Version, e.Data,
                    new EventMetadata(e.UserName!, e.Headers![MartenEventJournal.NodeHeader].ToString()!, e.CorrelationId!, e.CausationId));
                previous[e.StreamKey!] = hash;
                await SqlAsync($"UPDATE $E SET headers = jsonb_set(headers, '{{hash}}', '\"{hash}\"') WHERE seq_id = {e.Sequence}");
            }
        }
        var before = await _ledger.VerifyAsync();
        Assert.True(before.Intact, string.Join("\n", before.Problems));
        Assert.Equal(6, before.Format1Events);

        // A fresh journal (a restarted host): it reads the format-1 tail from the table and chains on in format 2.
        await new MartenEventJournal(_store).AppendAsync("node-n1", 3, [new NodeLeft("n1", "shutdown", DateTimeOffset.UtcNow)], Meta);
        var after = await _ledger.VerifyAsync();
        Assert.True(after.Intact, string.Join("\n", after.Problems));
        Assert.Equal((7L, 6L), (after.Events, after.Format1Events));

        await SqlAsync($"UPDATE $E SET data = jsonb_set(data, '{{Kernel}}', '\"5.4\"') WHERE {N1V1}");
        var problem = Assert.Single((await _ledger.VerifyAsync()).Problems);
        Assert.Equal(("edited", "node-n1", 1L), (problem.Kind, problem.Stream, problem.Version!.Value));
    }

    [Fact]
    public async Task A_format_2_hash_downgraded_to_format_1_is_an_edit()
    {
        // Format 1 did not cover the added field; a hand that adds it and writes a format-1 hash must not pass.
        await SqlAsync("UPDATE $E SET data = jsonb_set(data, '{tampered}', 'true') WHERE stream_id = 'node-n1' AND version = 3");
        await using (var session = _store.QuerySession())
        {
            var events = await session.Events.FetchStreamAsync("node-n1");
            var hash = EventHashChain.ComputeFormat1(events[1].Headers![EventHashChain.Header].ToString()!, "node-n1", 3, events[2].Data, Meta);
            await SqlAsync($"UPDATE $E SET headers = jsonb_set(headers, '{{hash}}', '\"{hash}\"') WHERE stream_id = 'node-n1' AND version = 3");
        }
        var problem = Assert.Single((await _ledger.VerifyAsync()).Problems);
        Assert.Equal(("edited", "node-n1", 3L), (problem.Kind, problem.Stream, problem.Version!.Value));
    }

    [Theory]
    [InlineData("{\"b\": 1, \"a\": [1E+20, 2.50, -0, 1e-7]}", "{\"a\":[100000000000000000000,2.50,0,0.0000001],\"b\":1}")]
    [InlineData("{\"s\": \"\\u00e9\\n\\\"\"}", "{\"s\":\"é\\n\\\"\"}")]
    public void The_canonical_form_is_what_jsonb_keeps(string json, string canonical) =>
        Assert.Equal(canonical, EventHashChain.Canonical(json));
}
