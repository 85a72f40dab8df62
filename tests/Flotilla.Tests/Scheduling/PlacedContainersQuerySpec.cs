using Flotilla.Cluster.Containers;
using Flotilla.Cluster.EventStore;
using Flotilla.Cluster.Queries;
using Flotilla.Contracts.Containers;
using Flotilla.Tests.Infrastructure;
using Marten;
using Npgsql;
using Xunit;

namespace Flotilla.Tests.Scheduling;

/// <summary>The scheduler's read of the containers that hold a place: plain columns out of the container views.</summary>
[Collection("postgres")]
public class PlacedContainersQuerySpec(PostgresFixture postgres) : IAsyncLifetime
{
    private DocumentStore _store = null!;
    private MartenEventJournal _journal = null!;
    private string _connectionString = "";
    private static readonly EventMetadata Meta = new("alice", "node-a", "req-1", null);

    public async Task InitializeAsync()
    {
        _connectionString = await postgres.NewDatabaseAsync("placed_query");
        _store = FlotillaStore.Create(_connectionString);
        await _store.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
        _journal = new MartenEventJournal(_store);
    }

    public Task DisposeAsync()
    {
        _store.Dispose();
        return Task.CompletedTask;
    }

    private async Task CreateAsync(string id, string node, long memory, long nanoCpus, RestartPolicyName restart, params IContainerEvent[] then)
    {
        var definition = ContainerDefinition.Minimal("busybox", "sha256:" + new string('a', 64), ["sh"],
            labels: new Dictionary<string, string> { ["a"] = "b" }) with
        { Memory = memory, NanoCpus = nanoCpus, RestartPolicy = new RestartPolicy(restart, 0) };
        var at = DateTimeOffset.UtcNow;
        await _journal.AppendAsync(ContainerStreams.Key(id), 0,
            [new ContainerCreated(id, "name-" + id, definition, node, at), new ContainerPlaced(id, node, "spread", "test", at), .. then], Meta);
    }

    [Fact]
    public async Task Created_and_running_containers_come_back_with_what_the_scheduler_counts_and_nothing_else_does()
    {
        await CreateAsync("c-created", "n1", 64L << 20, 500_000_000, RestartPolicyName.Always);
        await CreateAsync("c-running", "n2", 0, 0, RestartPolicyName.No, new ContainerStarted("c-running", 1, "n2", 42, DateTimeOffset.UtcNow));
        await CreateAsync("c-stopped", "n1", 1 << 20, 0, RestartPolicyName.No, new ContainerStopped("c-stopped", Signal.Term, 10, DateTimeOffset.UtcNow));
        await CreateAsync("c-removed", "n1", 1 << 20, 0, RestartPolicyName.No, new ContainerRemoved("c-removed", DateTimeOffset.UtcNow));

        var placed = (await new ClusterQueries(_store).ContainersPlacedAsync()).OrderBy(c => c.ContainerId).ToList();

        Assert.Equal(["c-created", "c-running"], placed.Select(c => c.ContainerId));
        var created = placed[0];
        Assert.Equal(("n1", DesiredState.Created, ContainerStatus.Created, 64L << 20, 500_000_000L, RestartPolicyName.Always),
            (created.Node, created.Desired, created.Status, created.Memory, created.NanoCpus, created.RestartPolicy));
        var running = placed[1];
        Assert.Equal(("n2", DesiredState.Running, ContainerStatus.Running, 0L, 0L, RestartPolicyName.No),
            (running.Node, running.Desired, running.Status, running.Memory, running.NanoCpus, running.RestartPolicy));
    }

    private static string Describe(PlacedContainers read) =>
        string.Join(", ", read.ById.Values.OrderBy(c => c.ContainerId).Select(c => $"{c.ContainerId}@{c.Node}:{c.Desired}:{c.Memory}"));

    [Fact]
    public async Task An_update_reads_what_changed_and_equals_a_whole_read_and_a_removal_forces_a_whole_read()
    {
        var queries = new ClusterQueries(_store);
        await CreateAsync("c-1", "n1", 1 << 20, 0, RestartPolicyName.No);
        await CreateAsync("c-2", "n2", 2 << 20, 0, RestartPolicyName.No);
        var first = await queries.ContainersPlacedAsync(null);
        Assert.False(first.Incremental);

        await CreateAsync("c-3", "n3", 3 << 20, 0, RestartPolicyName.No);
        await _journal.AppendAsync(ContainerStreams.Key("c-1"), 2, [new ContainerStopped("c-1", Signal.Term, 10, DateTimeOffset.UtcNow)], Meta);
        var updated = await queries.ContainersPlacedAsync(first);
        Assert.True(updated.Incremental);
        Assert.Equal(Describe(await queries.ContainersPlacedAsync(null)), Describe(updated));
        Assert.Equal(["c-2", "c-3"], updated.ById.Keys.Order());
        // The earlier read is left as it was (the scheduler may still be using it).
        Assert.Equal(["c-1", "c-2"], first.ById.Keys.Order());

        // A removed container's view is deleted: no row tells, the count does.
        await _journal.AppendAsync(ContainerStreams.Key("c-2"), 2, [new ContainerRemoved("c-2", DateTimeOffset.UtcNow)], Meta);
        var afterRemoval = await queries.ContainersPlacedAsync(updated);
        Assert.False(afterRemoval.Incremental);
        Assert.Equal(["c-3"], afterRemoval.ById.Keys.Order());
    }

    [Fact]
    public async Task A_write_that_commits_after_a_read_began_is_in_the_next_update()
    {
        var queries = new ClusterQueries(_store);
        await CreateAsync("c-slow", "n1", 1 << 20, 0, RestartPolicyName.No);
        await using var writer = new NpgsqlConnection(_connectionString);
        await writer.OpenAsync();
        await using (var begin = new NpgsqlCommand(
            $"BEGIN; UPDATE {FlotillaStore.DefaultSchema}.mt_doc_containerview SET data = jsonb_set(data, '{{Node}}', '\"n9\"') WHERE id = '{ContainerStreams.Key("c-slow")}'", writer))
            await begin.ExecuteNonQueryAsync();

        var during = await queries.ContainersPlacedAsync(null);
        Assert.Equal("n1", during.ById["c-slow"].Node);
        await using (var commit = new NpgsqlCommand("COMMIT", writer))
            await commit.ExecuteNonQueryAsync();

        var next = await queries.ContainersPlacedAsync(during);
        Assert.True(next.Incremental);
        Assert.Equal("n9", next.ById["c-slow"].Node);
    }
}
