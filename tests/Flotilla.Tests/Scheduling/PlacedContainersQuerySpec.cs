using Flotilla.Cluster.Containers;
using Flotilla.Cluster.EventStore;
using Flotilla.Cluster.Queries;
using Flotilla.Contracts.Containers;
using Flotilla.Tests.Infrastructure;
using Marten;
using Xunit;

namespace Flotilla.Tests.Scheduling;

/// <summary>The scheduler's read of the containers that hold a place: plain columns out of the container views.</summary>
[Collection("postgres")]
public class PlacedContainersQuerySpec(PostgresFixture postgres) : IAsyncLifetime
{
    private DocumentStore _store = null!;
    private MartenEventJournal _journal = null!;
    private static readonly EventMetadata Meta = new("alice", "node-a", "req-1", null);

    public async Task InitializeAsync()
    {
        _store = FlotillaStore.Create(await postgres.NewDatabaseAsync("placed_query"));
        await _store.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
        _journal = new MartenEventJournal(_store);
    }

    public Task DisposeAsync()
    {
        _store.Dispose();
        return Task.CompletedTask;
    }

    private async Task CreateAsync(string id, string node, long memory, long nanoCpus, string restart, params IContainerEvent[] then)
    {
        var definition = ContainerDefinition.Minimal("busybox", "sha256:" + new string('a', 64), ["sh"],
            labels: new Dictionary<string, string> { ["a"] = "b" }) with { Memory = memory, NanoCpus = nanoCpus, RestartPolicy = new RestartPolicy(restart, 0) };
        var at = DateTimeOffset.UtcNow;
        await _journal.AppendAsync(ContainerStreams.Key(id), 0,
            [new ContainerCreated(id, "name-" + id, definition, node, at), new ContainerPlaced(id, node, "spread", "test", at), .. then], Meta);
    }

    [Fact]
    public async Task Created_and_running_containers_come_back_with_what_the_scheduler_counts_and_nothing_else_does()
    {
        await CreateAsync("c-created", "n1", 64L << 20, 500_000_000, "always");
        await CreateAsync("c-running", "n2", 0, 0, "no", new ContainerStarted("c-running", 1, "n2", 42, DateTimeOffset.UtcNow));
        await CreateAsync("c-stopped", "n1", 1 << 20, 0, "no", new ContainerStopped("c-stopped", "TERM", 10, DateTimeOffset.UtcNow));
        await CreateAsync("c-removed", "n1", 1 << 20, 0, "no", new ContainerRemoved("c-removed", DateTimeOffset.UtcNow));

        var placed = (await new ClusterQueries(_store).ContainersPlacedAsync()).OrderBy(c => c.ContainerId).ToList();

        Assert.Equal(["c-created", "c-running"], placed.Select(c => c.ContainerId));
        var created = placed[0];
        Assert.Equal(("n1", DesiredState.Created, ContainerStatus.Created, 64L << 20, 500_000_000L, "always"),
            (created.Node, created.Desired, created.Status, created.Memory, created.NanoCpus, created.RestartPolicy));
        var running = placed[1];
        Assert.Equal(("n2", DesiredState.Running, ContainerStatus.Running, 0L, 0L, "no"),
            (running.Node, running.Desired, running.Status, running.Memory, running.NanoCpus, running.RestartPolicy));
    }
}
