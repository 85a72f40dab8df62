using System.Text.Json;
using Flotilla.Cluster.Containers;
using Flotilla.Cluster.EventStore;
using Flotilla.Cluster.Queries;
using Flotilla.Contracts.Containers;
using Flotilla.Tests.Infrastructure;
using Marten;
using Xunit;

namespace Flotilla.Tests.Containers;

/// <summary>
/// The container's read model (<see cref="ContainerView"/>, what <c>docker ps</c> and the scheduler read) says what
/// the entity's state says, after every event of every container event type: both come from one fold.
/// </summary>
[Collection("postgres")]
public class ContainerViewFoldSpec(PostgresFixture postgres) : IAsyncLifetime
{
    private DocumentStore _store = null!;
    private MartenEventJournal _journal = null!;
    private static readonly EventMetadata Meta = new("alice", "n1", "req-1", null);
    private static readonly DateTimeOffset T0 = new(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);

    public async Task InitializeAsync()
    {
        _store = FlotillaStore.Create(await postgres.NewDatabaseAsync("view_fold"));
        await _store.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
        _journal = new MartenEventJournal(_store);
    }

    public Task DisposeAsync()
    {
        _store.Dispose();
        return Task.CompletedTask;
    }

    private static ContainerCreated Created(string id) => new(id, "name-" + id,
        ContainerDefinition.Minimal("busybox", "sha256:" + new string('a', 64), ["sleep", "1000"],
            labels: new Dictionary<string, string> { ["tier"] = "front" }) with
        { RestartPolicy = new RestartPolicy(RestartPolicyName.Always, 0), Memory = 1 << 20 },
        "n1", T0);

    /// <summary>A container whose definition has a healthcheck: a start sets its health to starting.</summary>
    private static ContainerCreated CreatedWithHealthcheck(string id) => Created(id) with
    {
        Definition = Created(id).Definition with { Healthcheck = new HealthcheckConfig(["CMD-SHELL", "test -f /ok"], 1_000_000_000, 0, 0, 0, 2) },
    };

    /// <summary>
    /// One history per container event type, ending in (or passing through) that type in a state where it matters.
    /// A new event type without a history here fails <see cref="Every_container_event_type_has_a_history_in_this_table"/>.
    /// </summary>
    private static readonly Dictionary<Type, Func<string, IContainerEvent[]>> Histories = new()
    {
        [typeof(ContainerCreated)] = id => [Created(id)],
        [typeof(ContainerRenamed)] = id => [Created(id), new ContainerRenamed(id, "name-" + id, "renamed-" + id, T0.AddSeconds(1))],
        [typeof(ContainerStarted)] = id => [Created(id), new ContainerStarted(id, 1, "n1", 42, T0.AddSeconds(1), 3)],
        [typeof(ContainerStartFailed)] = id =>
        [
            Created(id), new ContainerStarted(id, 1, "n1", 42, T0.AddSeconds(1)), new ContainerExited(id, 1, 1, false, T0.AddSeconds(2)),
            new ContainerRestarted(id, "restart policy always", 1, T0.AddSeconds(3)),
            new ContainerStartFailed(id, 2, "exec: no such file", 127, T0.AddSeconds(4)),
        ],
        [typeof(ContainerExited)] = id =>
        [
            Created(id), new ContainerStarted(id, 1, "n1", 42, T0.AddSeconds(1)), new ContainerExited(id, 1, 3, true, T0.AddSeconds(2)),
            // A late report of an older run changes nothing.
            new ContainerStarted(id, 2, "n1", 43, T0.AddSeconds(3)), new ContainerExited(id, 1, 9, false, T0.AddSeconds(4)),
        ],
        [typeof(ContainerStopped)] = id =>
        [
            Created(id), new ContainerStarted(id, 1, "n1", 42, T0.AddSeconds(1)), new ContainerStopped(id, Signal.Term, 10, T0.AddSeconds(2)),
            new ContainerExited(id, 1, 143, false, T0.AddSeconds(3)),
        ],
        [typeof(ContainerKilled)] = id =>
        [
            Created(id), new ContainerStarted(id, 1, "n1", 42, T0.AddSeconds(1)), new ContainerKilled(id, Signal.Hup, T0.AddSeconds(2)),
            new ContainerKilled(id, Signal.Kill, T0.AddSeconds(3)), new ContainerExited(id, 1, 137, false, T0.AddSeconds(4)),
        ],
        [typeof(ContainerRestarted)] = id =>
        [
            Created(id), new ContainerStarted(id, 1, "n1", 42, T0.AddSeconds(1)), new ContainerExited(id, 1, 1, false, T0.AddSeconds(2)),
            new ContainerRestarted(id, "restart policy always", 1, T0.AddSeconds(3)), new ContainerStarted(id, 2, "n1", 43, T0.AddSeconds(4)),
            new ContainerRestarted(id, "user", 1, T0.AddSeconds(5)),
        ],
        [typeof(ContainerPaused)] = id => [Created(id), new ContainerStarted(id, 1, "n1", 42, T0.AddSeconds(1)), new ContainerPaused(id, T0.AddSeconds(2))],
        [typeof(ContainerUnpaused)] = id =>
        [
            Created(id), new ContainerStarted(id, 1, "n1", 42, T0.AddSeconds(1)), new ContainerPaused(id, T0.AddSeconds(2)),
            new ContainerUnpaused(id, T0.AddSeconds(3)),
        ],
        [typeof(ContainerExecStarted)] = id =>
        [
            Created(id), new ContainerStarted(id, 1, "n1", 42, T0.AddSeconds(1)),
            new ContainerExecStarted(id, "exec-1", ["sh"], "", true, T0.AddSeconds(2)),
        ],
        [typeof(ContainerCommitted)] = id => [Created(id), new ContainerCommitted(id, "sha256:" + new string('b', 64), "t/x:1", T0.AddSeconds(1))],
        [typeof(ContainerExported)] = id => [Created(id), new ContainerExported(id, T0.AddSeconds(1))],
        [typeof(ContainerRemoved)] = id =>
        [
            Created(id), new ContainerStarted(id, 1, "n1", 42, T0.AddSeconds(1)), new ContainerExited(id, 1, 137, false, T0.AddSeconds(2)),
            new ContainerRemoved(id, T0.AddSeconds(3)),
        ],
        [typeof(ContainerPlaced)] = id => [Created(id), new ContainerPlaced(id, "n2", "spread", "most free memory", T0)],
        [typeof(ContainerRescheduled)] = id =>
        [
            Created(id), new ContainerStarted(id, 1, "n1", 42, T0.AddSeconds(1), 3),
            new ContainerRescheduled(id, "n1", "n2", "node n1 left", T0.AddSeconds(2), 3), new ContainerStarted(id, 2, "n2", 7, T0.AddSeconds(3), 1),
        ],
        [typeof(ContainerHealthChanged)] = id =>
        [
            CreatedWithHealthcheck(id), new ContainerStarted(id, 1, "n1", 42, T0.AddSeconds(1)),
            new ContainerHealthChanged(id, 1, HealthStatus.Unhealthy, 2, new HealthcheckResult(T0.AddSeconds(2), T0.AddSeconds(2), 1, ""), T0.AddSeconds(2)),
            new ContainerHealthChanged(id, 1, HealthStatus.Healthy, 0, new HealthcheckResult(T0.AddSeconds(3), T0.AddSeconds(3), 0, "ok"), T0.AddSeconds(3)),
            // A late report about an older run changes nothing.
            new ContainerHealthChanged(id, 0, HealthStatus.Unhealthy, 3, new HealthcheckResult(T0.AddSeconds(4), T0.AddSeconds(4), 1, ""), T0.AddSeconds(4)),
            new ContainerExited(id, 1, 0, false, T0.AddSeconds(5)),
        ],
        [typeof(ContainerNodeLost)] = id =>
        [
            Created(id), new ContainerStarted(id, 1, "n1", 42, T0.AddSeconds(1)),
            new ContainerNodeLost(id, "n1", 1, "node n1 left", T0.AddSeconds(2)),
        ],
    };

    /// <summary>Every concrete container event type, found by reflection: a new one joins the table test by itself.</summary>
    public static TheoryData<string> EventTypes()
    {
        var data = new TheoryData<string>();
        foreach (var type in EventTypesByReflection()) data.Add(type.Name);
        return data;
    }

    private static IEnumerable<Type> EventTypesByReflection() => typeof(IContainerEvent).Assembly.GetTypes()
        .Where(t => t is { IsAbstract: false, IsInterface: false } && typeof(IContainerEvent).IsAssignableFrom(t)).OrderBy(t => t.Name);

    [Fact]
    public void Every_container_event_type_has_a_history_in_this_table()
    {
        var missing = EventTypesByReflection().Where(t => !Histories.ContainsKey(t)).Select(t => t.Name).ToList();
        Assert.True(missing.Count == 0, $"container event types without a history in {nameof(Histories)}: {string.Join(", ", missing)}");
        Assert.True(EventTypesByReflection().Count() >= 17);
        // The projection takes in the union's types: every event type must be in it.
        Assert.Equal(EventTypesByReflection().Select(t => t.Name), ContainerEventTypes.All.Select(t => t.Name).Order());
    }

    [Theory]
    [MemberData(nameof(EventTypes))]
    public async Task After_every_event_the_view_says_what_the_entity_state_says(string eventType)
    {
        var type = EventTypesByReflection().Single(t => t.Name == eventType);
        Assert.True(Histories.TryGetValue(type, out var history), $"no history for {eventType} in {nameof(Histories)}");
        var id = "c-" + eventType.ToLowerInvariant();
        var events = history(id);
        Assert.Contains(events, e => e.GetType() == type);

        for (var i = 0; i < events.Length; i++)
        {
            await _journal.AppendAsync(ContainerStreams.Key(id), i, [events[i]], Meta);
            // The entity's state: the stream as stored, folded as the entity recovers it.
            var stream = await _journal.ReadAsync(ContainerStreams.Key(id));
            var state = ContainerFold.Replay(id, stream.Events.OfType<IContainerEvent>());
            await using var session = _store.QuerySession();
            var view = await session.LoadAsync<ContainerView>(ContainerStreams.Key(id));
            var step = $"after {events[i].GetType().Name} (event {i + 1} of {events.Length})";

            Assert.True(state.Exists == view is not null, $"{step}: entity exists={state.Exists}, view exists={view is not null}");
            if (view is null) continue;
            Assert.Equal((state.ContainerId, state.Name, state.Node, state.Desired, state.Status),
                (view.ContainerId, view.Name, view.Node, view.Desired, view.Status));
            Assert.Equal((state.Pid, state.ExitCode, state.RestartCount, state.Generation),
                (view.Pid, view.ExitCode, view.RestartCount, view.Generation));
            Assert.Equal((state.CreatedAt, state.StartedAt, state.FinishedAt), (view.CreatedAt, view.StartedAt, view.FinishedAt));
            Assert.Equal(state.Definition!.Image, view.Image);
            Assert.Equal(state.Definition.ImageId, view.ImageId);
            Assert.Equal(state.Definition.Memory, view.Memory);
            Assert.Equal(state.Definition.Labels, view.Labels);
            Assert.Equal(state.Health?.Status, view.Health);
            // The state the view carries is the entity's, so the next event folds from the same place.
            Assert.Equal(JsonSerializer.Serialize(state), JsonSerializer.Serialize(view.State));
        }
    }

    /// <summary>
    /// A view written before views carried the entity's state (and Docker's lowercase status word) still reads, and its
    /// next event folds from the container's stream.
    /// </summary>
    [Fact]
    public async Task A_view_written_before_views_carried_the_state_is_folded_from_its_stream_at_its_next_event()
    {
        var id = "c-old-view";
        await _journal.AppendAsync(ContainerStreams.Key(id), 0,
            [Created(id), new ContainerStarted(id, 1, "n1", 42, T0.AddSeconds(1)), new ContainerRenamed(id, "name-" + id, "kept", T0.AddSeconds(2))], Meta);
        await using (var sql = _store.LightweightSession())
        {
            sql.QueueSqlCommand($"UPDATE {_store.Options.DatabaseSchemaName}.mt_doc_containerview SET data = jsonb_set(data - 'State', '{{Status}}', '\"running\"') WHERE id = ?",
                ContainerStreams.Key(id));
            await sql.SaveChangesAsync();
        }
        await using (var session = _store.QuerySession())
        {
            var old = (await session.LoadAsync<ContainerView>(ContainerStreams.Key(id)))!;
            Assert.Null(old.State);
            Assert.Equal(ContainerStatus.Running, old.Status);
        }

        await _journal.AppendAsync(ContainerStreams.Key(id), 3, [new ContainerKilled(id, Signal.Kill, T0.AddSeconds(3))], Meta);

        await using var after = _store.QuerySession();
        var view = (await after.LoadAsync<ContainerView>(ContainerStreams.Key(id)))!;
        Assert.NotNull(view.State);
        Assert.Equal(("kept", DesiredState.Stopped, 42, 1L), (view.Name, view.Desired, view.Pid, view.Generation));
    }

    /// <summary>
    /// Issue 15 item 3: after <c>docker kill</c> the view said desired = running, so the scheduler kept counting the
    /// container on its host and would have moved it off a dead one.
    /// </summary>
    [Fact]
    public async Task A_killed_container_is_not_wanted_running_nor_counted_by_the_scheduler()
    {
        var id = "c-killed";
        await _journal.AppendAsync(ContainerStreams.Key(id), 0,
        [
            Created(id), new ContainerStarted(id, 1, "n1", 42, T0.AddSeconds(1)),
            new ContainerKilled(id, Signal.Kill, T0.AddSeconds(2)), new ContainerExited(id, 1, 137, false, T0.AddSeconds(3)),
        ], Meta);

        var queries = new ClusterQueries(_store);
        Assert.DoesNotContain(await queries.ContainersDesiredRunningAsync(), c => c.ContainerId == id);
        Assert.DoesNotContain(await queries.ContainersPlacedAsync(), c => c.ContainerId == id);
        await using var session = _store.QuerySession();
        Assert.Equal(DesiredState.Stopped, (await session.LoadAsync<ContainerView>(ContainerStreams.Key(id)))!.Desired);
    }
}
