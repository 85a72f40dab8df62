using Flotilla.Cluster.Audit;
using Flotilla.Cluster.EventStore;
using Flotilla.Contracts.Containers;
using Flotilla.Tests.Infrastructure;
using Flotilla.Tests.Support;
using JasperFx.Events;
using Marten;
using Npgsql;
using Xunit;

namespace Flotilla.Tests.EventStore;

/// <summary>
/// The journal's group commit. A test holds a lock on the events table so the first append's commit waits; the
/// appends made meanwhile must then go into one transaction (rows sharing one xmin) and still each keep their own
/// version check, metadata and hash chain.
/// </summary>
[Collection("postgres")]
public class GroupCommitSpec(PostgresFixture postgres) : IAsyncLifetime
{
    private DocumentStore _store = null!;
    private MartenEventJournal _journal = null!;
    private string _connectionString = "";

    public async Task InitializeAsync()
    {
        _connectionString = await postgres.NewDatabaseAsync("group_commit");
        _store = FlotillaStore.Create(_connectionString);
        await _store.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
        _journal = new MartenEventJournal(_store);
    }

    public Task DisposeAsync()
    {
        _store.Dispose();
        return Task.CompletedTask;
    }

    private static ContainerCreated Created(string id) =>
        new(id, "web-" + id, ContainerDefinition.Minimal("busybox", "sha256:" + new string('a', 64), ["sh"]), "n1", DateTimeOffset.UtcNow);

    private static ContainerRenamed Renamed(string id, string to) => new(id, "web", to, DateTimeOffset.UtcNow);

    private static EventMetadata MetaFor(int i) => new($"user-{i}", $"node-{i}", $"corr-{i}", i % 2 == 0 ? null : $"cause-{i}");

    /// <summary>
    /// Starts an append that cannot commit until the returned lock is released, and waits until it is stuck in its
    /// commit: whatever is appended before the release waits for the next transaction.
    /// </summary>
    private async Task<(NpgsqlConnection Lock, Task<long> Gate)> HoldCommitsAsync(string gateStream, CancellationToken gateToken = default)
    {
        var connection = new NpgsqlConnection(_connectionString);
        await connection.OpenAsync();
        await using (var begin = new NpgsqlCommand($"begin; lock table {FlotillaStore.DefaultSchema}.mt_events in share mode", connection))
            await begin.ExecuteNonQueryAsync();
        var gate = _journal.AppendAsync(gateStream, 0, [Created(gateStream)], MetaFor(0), gateToken);
        Assert.True(await Eventually.TrueAsync(async () => await ScalarAsync<long>("select count(*) from pg_locks where not granted") > 0,
            TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(20)), "the gate append never reached its commit");
        return (connection, gate);
    }

    /// <summary>Like <see cref="HoldCommitsAsync"/> for reads: the first read waits on a lock that blocks reading too.</summary>
    private async Task<(NpgsqlConnection Lock, Task<StoredStream> Gate)> HoldReadsAsync(string gateStream)
    {
        var connection = new NpgsqlConnection(_connectionString);
        await connection.OpenAsync();
        await using (var begin = new NpgsqlCommand($"begin; lock table {FlotillaStore.DefaultSchema}.mt_events in access exclusive mode", connection))
            await begin.ExecuteNonQueryAsync();
        var gate = _journal.ReadAsync(gateStream);
        Assert.True(await Eventually.TrueAsync(async () => await ScalarAsync<long>("select count(*) from pg_locks where not granted") > 0,
            TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(20)), "the gate read never reached its query");
        return (connection, gate);
    }

    private static async Task ReleaseAsync(NpgsqlConnection connection)
    {
        await using (var rollback = new NpgsqlCommand("rollback", connection))
            await rollback.ExecuteNonQueryAsync();
        await connection.DisposeAsync();
    }

    private async Task<T> ScalarAsync<T>(string sql)
    {
        await using var connection = new NpgsqlConnection(_connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>How many transactions wrote the events of streams starting with the prefix (PostgreSQL's xmin).</summary>
    private Task<long> TransactionsAsync(string prefix) =>
        ScalarAsync<long>($"select count(distinct xmin::text) from {FlotillaStore.DefaultSchema}.mt_events where stream_id like '{prefix}%'");

    private static async Task<Exception?> Settle(Task task)
    {
        try
        {
            await task;
            return null;
        }
        catch (Exception ex)
        {
            return ex;
        }
    }

    [Fact]
    public async Task Appends_made_during_a_commit_share_one_transaction_with_their_own_versions_and_metadata()
    {
        // Half the streams exist (their appends check version 1), half are new (their appends start them).
        for (var i = 0; i < 20; i++) await _journal.AppendAsync($"many-{i}", 0, [Created($"c{i}")], MetaFor(100 + i));

        var (held, gate) = await HoldCommitsAsync("gate-1");
        var appends = Enumerable.Range(0, 40).Select(i => i < 20
            ? _journal.AppendAsync($"many-{i}", 1, [Renamed($"c{i}", $"a{i}"), Renamed($"c{i}", $"b{i}")], MetaFor(i))
            : _journal.AppendAsync($"many-{i}", 0, [Created($"c{i}")], MetaFor(i))).ToList();
        await Task.Delay(100);
        Assert.All(appends, a => Assert.False(a.IsCompleted));
        await ReleaseAsync(held);

        Assert.Equal(1, await gate);
        var versions = await Task.WhenAll(appends);
        Assert.Equal(Enumerable.Range(0, 40).Select(i => i < 20 ? 3L : 1L), versions);

        await using var session = _store.QuerySession();
        for (var i = 0; i < 40; i++)
        {
            var events = await session.Events.FetchStreamAsync($"many-{i}");
            Assert.Equal(versions[i], events[^1].Version);
            foreach (var e in events.Where(e => e.Version > (i < 20 ? 1 : 0)))
            {
                var meta = MetaFor(i);
                Assert.Equal(meta.User, e.UserName);
                Assert.Equal(meta.CorrelationId, e.CorrelationId);
                Assert.Equal(meta.CausationId, e.CausationId);
                Assert.Equal(meta.Node, e.GetHeader(MartenEventJournal.NodeHeader)?.ToString());
            }
        }
        // The 40 appends made while the gate's commit waited: one transaction (seeding was 20 more).
        Assert.Equal(21, await TransactionsAsync("many-"));
        var audit = await new AuditLedger(_store).VerifyAsync();
        Assert.True(audit.Intact, string.Join("; ", audit.Problems.Select(p => p.ToString())));
    }

    [Fact]
    public async Task A_conflicting_append_in_a_batch_fails_alone_and_the_others_commit()
    {
        for (var i = 0; i < 10; i++) await _journal.AppendAsync($"mixed-{i}", 0, [Created($"m{i}")], MetaFor(i));
        await _journal.AppendAsync("mixed-holder", 0, [Created("h")], MetaFor(0));

        var (held, gate) = await HoldCommitsAsync("gate-2");
        // mixed-3 starts a stream that exists; mixed-7 expects a version the stream never had; mixed-5 takes a name
        // another container holds (the read model's unique index).
        var appends = Enumerable.Range(0, 10).Select(i => i switch
        {
            3 => _journal.AppendAsync("mixed-3", 0, [Created("m3")], MetaFor(i)),
            5 => _journal.AppendAsync("mixed-5", 1, [Renamed("m5", "web-h")], MetaFor(i)),
            7 => _journal.AppendAsync("mixed-7", 4, [Renamed("m7", "x7")], MetaFor(i)),
            _ => _journal.AppendAsync($"mixed-{i}", 1, [Renamed($"m{i}", $"x{i}")], MetaFor(i)),
        }).ToList();
        await ReleaseAsync(held);
        await gate;
        var outcomes = await Task.WhenAll(appends.Select(Settle));

        for (var i = 0; i < 10; i++)
        {
            if (i is 3 or 7)
            {
                var conflict = Assert.IsType<StreamVersionConflictException>(outcomes[i]);
                Assert.Equal($"mixed-{i}", conflict.StreamKey);
                Assert.Equal(1, (await _journal.ReadAsync($"mixed-{i}")).Version);
            }
            else if (i == 5)
            {
                var taken = Assert.IsType<UniqueValueTakenException>(outcomes[i]);
                Assert.Equal(FlotillaStore.ContainerNameIndex, taken.Constraint);
                Assert.Equal(1, (await _journal.ReadAsync("mixed-5")).Version);
            }
            else
            {
                Assert.Null(outcomes[i]);
                Assert.Equal(2, appends[i].Result);
            }
        }
        // The seven that fit were not each left to a transaction of their own (seeding took eleven).
        Assert.True(await TransactionsAsync("mixed-") < 11 + 7);

        // The losers' next append, at the version they really have, works and chains on.
        Assert.Equal(2, await _journal.AppendAsync("mixed-7", 1, [Renamed("m7", "y")], MetaFor(7)));
        var audit = await new AuditLedger(_store).VerifyAsync();
        Assert.True(audit.Intact, string.Join("; ", audit.Problems.Select(p => p.ToString())));
    }

    [Fact]
    public async Task A_caller_cancelled_while_waiting_writes_nothing_and_the_others_go_on()
    {
        using var waiting = new CancellationTokenSource();
        using var inFlight = new CancellationTokenSource();
        var (held, gate) = await HoldCommitsAsync("gate-3", inFlight.Token);
        var before = _journal.AppendAsync("cancel-a", 0, [Created("a")], MetaFor(1));
        var cancelled = _journal.AppendAsync("cancel-b", 0, [Created("b")], MetaFor(2), waiting.Token);
        var after = _journal.AppendAsync("cancel-c", 0, [Created("c")], MetaFor(3));

        waiting.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled);
        // The caller whose commit is under way stops waiting; the commit itself is shared and goes through.
        inFlight.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => gate);
        await ReleaseAsync(held);

        Assert.Equal(1, await before);
        Assert.Equal(1, await after);
        Assert.Equal(0, (await _journal.ReadAsync("cancel-b")).Version);
        Assert.True(await Eventually.TrueAsync(async () => (await _journal.ReadAsync("gate-3")).Version == 1, TimeSpan.FromSeconds(10)));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            _journal.AppendAsync("cancel-d", 0, [Created("d")], MetaFor(4), new CancellationToken(canceled: true)));
        Assert.Equal(0, (await _journal.ReadAsync("cancel-d")).Version);
        // Nothing is stuck: the journal still commits.
        Assert.Equal(1, await _journal.AppendAsync("cancel-b", 0, [Created("b")], MetaFor(2)));
    }

    [Fact]
    public async Task Two_appends_to_one_stream_waiting_together_are_committed_in_order()
    {
        await _journal.AppendAsync("same", 0, [Created("s")], MetaFor(1));
        var (held, gate) = await HoldCommitsAsync("gate-4");
        var first = _journal.AppendAsync("same", 1, [Renamed("s", "a")], MetaFor(2));
        var second = _journal.AppendAsync("same", 2, [Renamed("s", "b")], MetaFor(3));
        var stale = _journal.AppendAsync("same", 1, [Renamed("s", "c")], MetaFor(4));
        await ReleaseAsync(held);
        await gate;

        Assert.Equal(2, await first);
        Assert.Equal(3, await second);
        await Assert.ThrowsAsync<StreamVersionConflictException>(() => stale);
        var stream = await _journal.ReadAsync("same");
        Assert.Equal("b", Assert.IsType<ContainerRenamed>(stream.Events[^1]).NewName);
        var audit = await new AuditLedger(_store).VerifyAsync();
        Assert.True(audit.Intact, string.Join("; ", audit.Problems.Select(p => p.ToString())));
    }

    [Fact]
    public async Task Reads_made_during_a_read_are_answered_by_one_query_each_with_its_own_stream()
    {
        await _journal.AppendAsync("read-a", 0, [Created("a")], MetaFor(1));
        await _journal.AppendAsync("read-b", 0, [Created("b"), Renamed("b", "x"), Renamed("b", "y")], MetaFor(2));
        var before = _journal.Read;

        var (held, gate) = await HoldReadsAsync("read-a");
        using var cancel = new CancellationTokenSource();
        var a = _journal.ReadAsync("read-a");
        var b = _journal.ReadAsync("read-b");
        var again = _journal.ReadAsync("read-b");
        var missing = _journal.ReadAsync("read-none");
        var cancelled = _journal.ReadAsync("read-cancelled", cancel.Token);
        cancel.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled);
        await ReleaseAsync(held);

        Assert.Equal(1, (await gate).Version);
        Assert.IsType<ContainerCreated>(Assert.Single((await a).Events));
        var stream = await b;
        Assert.Equal(3, stream.Version);
        Assert.Equal(["b", "x", "y"], stream.Events.Select(e => e switch
        {
            ContainerCreated c => c.ContainerId,
            ContainerRenamed r => r.NewName,
            _ => "?",
        }));
        Assert.Equal(3, (await again).Version);
        var none = await missing;
        Assert.Equal(0, none.Version);
        Assert.Empty(none.Events);
        // The gate's own query, then one for the three streams asked meanwhile (the cancelled one not among them).
        Assert.Equal((before.Queries + 2, before.Streams + 4), _journal.Read);
    }
}
