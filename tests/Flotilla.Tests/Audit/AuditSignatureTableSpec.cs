using Flotilla.Cluster.Audit;
using Flotilla.Cluster.EventStore;
using Flotilla.Contracts.Nodes;
using Flotilla.Tests.Infrastructure;
using Marten;
using Npgsql;
using Xunit;

namespace Flotilla.Tests.Audit;

/// <summary>
/// Issue 13 item 14: whoever can write the tables (a node with the admin's login, a stolen backup restored) rewrites a
/// stream through Flotilla's own journal, so its hash chain is intact, and recomputes the checkpoints over it. Hashes
/// alone then verify; the gateways' checkpoint signature, with a key that is not in the database, does not.
/// </summary>
[Collection("postgres")]
public sealed class AuditSignatureTableSpec(PostgresFixture postgres) : IAsyncLifetime
{
    private static readonly EventMetadata Meta = new("alice", "node-a", "req-1", null);
    private readonly string _keyDirectory = Directory.CreateTempSubdirectory("flotilla-audit-key-").FullName;
    private DocumentStore _store = null!;
    private string _connectionString = "";
    private AuditCheckpointKey _key = null!;
    private AuditLedger _gateway = null!;

    public async Task InitializeAsync()
    {
        _connectionString = await postgres.NewDatabaseAsync("audit_signature");
        _store = FlotillaStore.Create(_connectionString);
        await _store.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
        _key = AuditCheckpointKey.LoadOrCreate(Path.Combine(_keyDirectory, AuditCheckpointKey.FileName));
        _gateway = new AuditLedger(_store, _key);
        var journal = new MartenEventJournal(_store);
        var v = await journal.AppendAsync("node-n1", 0, [Joined("n1"), new NodeLeft("n1", "shutdown", DateTimeOffset.UtcNow)], Meta);
        await journal.AppendAsync("node-n2", 0, [Joined("n2")], Meta);
        Assert.NotNull(await _gateway.CheckpointAsync(DateTimeOffset.UtcNow + AuditLedger.SettleTime));
        await journal.AppendAsync("node-n1", v, [Joined("n1")], Meta);
        Assert.NotNull(await _gateway.CheckpointAsync(DateTimeOffset.UtcNow + AuditLedger.SettleTime));
    }

    public Task DisposeAsync()
    {
        _store.Dispose();
        _key.Dispose();
        Directory.Delete(_keyDirectory, recursive: true);
        return Task.CompletedTask;
    }

    private static NodeJoined Joined(string name) =>
        new(name, "host-" + name, "akka.tcp://flotilla@127.0.0.1:4053", ["node"], 2, 1 << 30, "6.1", "runc", new Dictionary<string, string>(), DateTimeOffset.UtcNow);

    private async Task SqlAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(_connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>node-n1's history replaced by one where it never left, written by Flotilla's journal: a valid chain.</summary>
    private async Task RewriteHistoryAsync()
    {
        await SqlAsync("DELETE FROM flotilla.mt_events WHERE stream_id = 'node-n1'; DELETE FROM flotilla.mt_streams WHERE id = 'node-n1'; " +
                       "DELETE FROM flotilla.mt_doc_auditcheckpoint");
        await new MartenEventJournal(_store).AppendAsync("node-n1", 0, [Joined("n1")], Meta);
    }

    private static async Task RecomputeCheckpointsAsync(AuditLedger ledger)
    {
        // Past the settle time, so one checkpoint covers everything.
        Assert.NotNull(await ledger.CheckpointAsync(DateTimeOffset.UtcNow + TimeSpan.FromMinutes(1)));
    }

    public static TheoryData<string, string> Cases => new()
    {
        { "checkpoints recomputed, unsigned", "is not signed" },
        { "checkpoints recomputed, signed with the intruder's own key", "not by this gateway's key" },
        { "checkpoints recomputed, the gateway's old signature copied on", "signature does not match" },
        { "checkpoints deleted", "is gone" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task A_rewritten_chain_with_recomputed_checkpoints_is_caught_by_the_signature(string attack, string expected)
    {
        var before = await _gateway.VerifyAsync();
        Assert.True(before.Intact && before.SignaturesChecked && before.UnsignedCheckpoints == 0, string.Join("\n", before.Problems));
        AuditCheckpoint original;
        await using (var session = _store.QuerySession()) original = (await session.LoadAsync<AuditCheckpoint>(1))!;

        await RewriteHistoryAsync();
        switch (attack)
        {
            case "checkpoints recomputed, unsigned":
                await RecomputeCheckpointsAsync(new AuditLedger(_store));
                break;
            case "checkpoints recomputed, signed with the intruder's own key":
                using (var intruder = AuditCheckpointKey.Ephemeral()) await RecomputeCheckpointsAsync(new AuditLedger(_store, intruder));
                break;
            case "checkpoints recomputed, the gateway's old signature copied on":
                await RecomputeCheckpointsAsync(new AuditLedger(_store));
                await using (var session = _store.LightweightSession())
                {
                    var forged = (await session.LoadAsync<AuditCheckpoint>(1))!;
                    (forged.KeyId, forged.Signature) = (original.KeyId, original.Signature);
                    session.Store(forged);
                    await session.SaveChangesAsync();
                }
                break;
        }

        // Hashes alone (a verifier without the key, and every verifier before signatures): nothing to see.
        var hashesOnly = await new AuditLedger(_store).VerifyAsync();
        Assert.True(hashesOnly.Intact, string.Join("\n", hashesOnly.Problems));
        Assert.False(hashesOnly.SignaturesChecked);

        var result = await _gateway.VerifyAsync();
        var problem = Assert.Single(result.Problems);
        Assert.Equal("signature", problem.Kind);
        Assert.Contains(expected, problem.Detail);
    }

    [Fact]
    public async Task Checkpoints_from_before_signing_are_counted_not_refused()
    {
        // A store checkpointed by an older version (no key), then by a gateway with a key.
        await SqlAsync("DELETE FROM flotilla.mt_doc_auditcheckpoint");
        var fresh = Path.Combine(_keyDirectory, "other", AuditCheckpointKey.FileName);
        await RecomputeCheckpointsAsync(new AuditLedger(_store));
        using var key = AuditCheckpointKey.LoadOrCreate(fresh);
        var gateway = new AuditLedger(_store, key);
        await new MartenEventJournal(_store).AppendAsync("node-n3", 0, [Joined("n3")], Meta);
        await RecomputeCheckpointsAsync(gateway);
        var result = await gateway.VerifyAsync();
        Assert.True(result.Intact, string.Join("\n", result.Problems));
        Assert.Equal((2, 1), (result.Checkpoints, result.UnsignedCheckpoints));
        Assert.Equal(2, key.Since);
        // The key file is the gateway's secret: 0600.
        if (OperatingSystem.IsLinux()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(fresh));
    }
}
