using Flotilla.Cluster.EventStore;
using Flotilla.Contracts;
using Flotilla.Contracts.Containers;
using Flotilla.Tests.Infrastructure;
using JasperFx.Events;
using Marten;
using Xunit;

namespace Flotilla.Tests.EventStore;

[Collection("postgres")]
public class MartenEventJournalSpec(PostgresFixture postgres) : IAsyncLifetime
{
    private DocumentStore _store = null!;
    private MartenEventJournal _journal = null!;

    public async Task InitializeAsync()
    {
        _store = FlotillaStore.Create(await postgres.NewDatabaseAsync("journal"));
        await _store.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
        _journal = new MartenEventJournal(_store);
    }

    public Task DisposeAsync()
    {
        _store.Dispose();
        return Task.CompletedTask;
    }

    private static ContainerCreated Created(string id) =>
        new(id, "web", ContainerDefinition.Minimal("busybox", "sha256:" + new string('a', 64), ["sh"]), "n1", DateTimeOffset.UtcNow);

    private static readonly EventMetadata Meta = new("alice", "node-a", "req-42", "cause-7");

    [Fact]
    public async Task Reading_a_missing_stream_gives_version_zero()
    {
        var stream = await _journal.ReadAsync("container-none");
        Assert.Empty(stream.Events);
        Assert.Equal(0, stream.Version);
    }

    [Fact]
    public async Task Appends_come_back_in_order_with_their_version()
    {
        var v1 = await _journal.AppendAsync("container-a", 0, [Created("a")], Meta);
        var v3 = await _journal.AppendAsync("container-a", v1,
            [new ContainerRenamed("a", "web", "x", DateTimeOffset.UtcNow), new ContainerRenamed("a", "x", "y", DateTimeOffset.UtcNow)], Meta);

        Assert.Equal(1, v1);
        Assert.Equal(3, v3);
        var stream = await _journal.ReadAsync("container-a");
        Assert.Equal(3, stream.Version);
        Assert.IsType<ContainerCreated>(stream.Events[0]);
        Assert.Equal("y", Assert.IsType<ContainerRenamed>(stream.Events[2]).NewName);
    }

    [Fact]
    public async Task Every_event_carries_user_node_correlation_and_causation()
    {
        await _journal.AppendAsync("container-m", 0, [Created("m")], Meta);
        await using var session = _store.QuerySession();
        var e = Assert.Single(await session.Events.FetchStreamAsync("container-m"));
        Assert.Equal("alice", e.UserName);
        Assert.Equal("req-42", e.CorrelationId);
        Assert.Equal("cause-7", e.CausationId);
        Assert.Equal("node-a", e.GetHeader(MartenEventJournal.NodeHeader)?.ToString());
    }

    [Fact]
    public async Task Two_writers_with_the_same_expected_version_one_loses()
    {
        await _journal.AppendAsync("container-race", 0, [Created("race")], Meta);

        var first = _journal.AppendAsync("container-race", 1, [new ContainerRenamed("race", "web", "a", DateTimeOffset.UtcNow)], Meta);
        var second = _journal.AppendAsync("container-race", 1, [new ContainerRenamed("race", "web", "b", DateTimeOffset.UtcNow)], Meta);
        var results = await Task.WhenAll(Settle(first), Settle(second));

        Assert.Single(results, r => r is null);
        Assert.IsType<StreamVersionConflictException>(Assert.Single(results, r => r is not null));
        var stream = await _journal.ReadAsync("container-race");
        Assert.Equal(2, stream.Version);
    }

    [Fact]
    public async Task Starting_a_stream_that_exists_is_a_conflict()
    {
        await _journal.AppendAsync("container-dup", 0, [Created("dup")], Meta);
        await Assert.ThrowsAsync<StreamVersionConflictException>(() => _journal.AppendAsync("container-dup", 0, [Created("dup")], Meta));
    }

    [Fact]
    public async Task A_stale_expected_version_is_a_conflict_and_writes_nothing()
    {
        await _journal.AppendAsync("container-stale", 0, [Created("stale")], Meta);
        await _journal.AppendAsync("container-stale", 1, [new ContainerRenamed("stale", "web", "a", DateTimeOffset.UtcNow)], Meta);
        await Assert.ThrowsAsync<StreamVersionConflictException>(() =>
            _journal.AppendAsync("container-stale", 1, [new ContainerRenamed("stale", "web", "b", DateTimeOffset.UtcNow)], Meta));
        Assert.Equal(2, (await _journal.ReadAsync("container-stale")).Version);
    }

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
}
