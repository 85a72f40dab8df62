using Flotilla.Cluster.Containers;
using Flotilla.Cluster.EventStore;
using Flotilla.Cluster.Hosting;
using Flotilla.Cluster.Nodes;
using Flotilla.Contracts.Containers;
using Flotilla.Tests.Infrastructure;
using Flotilla.Tests.Support;
using Marten;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Xunit;

namespace Flotilla.Tests.Containers;

/// <summary>A store from before container names were unique by index, holding one name twice, is repaired at start.</summary>
[Collection("postgres")]
public class ContainerNameRepairSpec(PostgresFixture postgres)
{
    private static readonly EventMetadata Meta = new("alice", "node-a", "req-1", null);

    private static ContainerCreated Created(string id, string name, DateTimeOffset at) =>
        new(id, name, ContainerDefinition.Minimal("busybox", "sha256:" + new string('a', 64), ["sh"]), "n1", at);

    [Fact]
    public async Task Containers_sharing_a_name_keep_it_oldest_first_and_the_others_are_renamed_by_an_event()
    {
        var cs = await postgres.NewDatabaseAsync("name_repair");
        var older = "a1" + new string('0', 62);
        var newer = "b2" + new string('0', 62);
        var third = "c3" + new string('0', 62);
        using (var before = FlotillaStore.Create(cs, uniqueContainerNames: false))
        {
            await before.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
            var journal = new MartenEventJournal(before);
            var t = DateTimeOffset.UtcNow;
            await journal.AppendAsync(ContainerStreams.Key(newer), 0, [Created(newer, "web", t)], Meta);
            await journal.AppendAsync(ContainerStreams.Key(older), 0, [Created(older, "web", t.AddMinutes(-1))], Meta);
            await journal.AppendAsync(ContainerStreams.Key(third), 0, [Created(third, "web", t.AddMinutes(1))], Meta);
        }

        // This is what would stop the process at start.
        using (var unrepaired = FlotillaStore.Create(cs))
            await Assert.ThrowsAnyAsync<Exception>(() => unrepaired.Storage.ApplyAllConfiguredChangesToDatabaseAsync());

        var repaired = await ContainerNameRepair.RunAsync(cs, FlotillaStore.DefaultSchema);
        Assert.Equal([new ContainerNameRepaired(newer, "web", "web-b20000000000"), new ContainerNameRepaired(third, "web", "web-c30000000000")], repaired);

        using var store = FlotillaStore.Create(cs);
        await store.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
        await using var session = store.QuerySession();
        var names = (await session.Query<ContainerView>().ToListAsync()).ToDictionary(c => c.ContainerId, c => c.Name);
        Assert.Equal(new Dictionary<string, string> { [older] = "web", [newer] = "web-b20000000000", [third] = "web-c30000000000" }, names);
        var renamed = await session.Events.FetchStreamAsync(ContainerStreams.Key(newer));
        Assert.Equal(("system", "web", "web-b20000000000"),
            (renamed[^1].UserName, ((ContainerRenamed)renamed[^1].Data).OldName, ((ContainerRenamed)renamed[^1].Data).NewName));

        // Once the index is there, nothing more to do.
        Assert.Empty(await ContainerNameRepair.RunAsync(cs, FlotillaStore.DefaultSchema));
    }

    [Fact]
    public async Task A_host_over_such_a_store_repairs_it_before_its_migration_and_starts()
    {
        var cs = await postgres.NewDatabaseAsync("name_repair_host");
        var a = "d4" + new string('0', 62);
        var b = "e5" + new string('0', 62);
        using (var before = FlotillaStore.Create(cs, uniqueContainerNames: false))
        {
            await before.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
            var journal = new MartenEventJournal(before);
            await journal.AppendAsync(ContainerStreams.Key(a), 0, [Created(a, "db", DateTimeOffset.UtcNow.AddMinutes(-1))], Meta);
            await journal.AppendAsync(ContainerStreams.Key(b), 0, [Created(b, "db", DateTimeOffset.UtcNow)], Meta);
        }

        var port = FreePort.Next();
        var options = new FlotillaClusterOptions
        {
            NodeName = "repair-node",
            Roles = [FlotillaClusterOptions.NodeRole],
            BindHost = "127.0.0.1",
            BindPort = port,
            Seeds = [$"127.0.0.1:{port}"],
            PostgresConnectionString = cs,
        };
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddFlotillaCluster(options, new NodeDescription("repair-node", "test-host", options.Roles, 2, 1L << 30, "k", "runc", new Dictionary<string, string>()));
        using var host = builder.Build();
        await host.StartAsync();
        try
        {
            await using var session = host.Services.GetRequiredService<IDocumentStore>().QuerySession();
            var names = (await session.Query<ContainerView>().ToListAsync()).ToDictionary(c => c.ContainerId, c => c.Name);
            Assert.Equal(new Dictionary<string, string> { [a] = "db", [b] = "db-e50000000000" }, names);
        }
        finally
        {
            await host.StopAsync();
        }
    }
}
