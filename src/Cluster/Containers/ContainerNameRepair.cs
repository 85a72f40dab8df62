using Flotilla.Cluster.EventStore;
using Flotilla.Cluster.Hosting;
using Flotilla.Contracts.Containers;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Flotilla.Cluster.Containers;

/// <summary>One container that had to give up a name another container held.</summary>
public sealed record ContainerNameRepaired(string ContainerId, string From, string To);

/// <summary>
/// Runs before the store's schema is brought up to date at start. A store written before container names were unique
/// by index may hold two containers with one name (the old check-then-create could race); the unique index cannot be
/// made over them, and the process would not start. The oldest holder keeps the name; each other one is renamed
/// <c>&lt;name&gt;-&lt;short id&gt;</c> by a <see cref="ContainerRenamed"/> event from "system", so the history says
/// what happened and a replay gives the same names.
/// </summary>
public sealed class ContainerNameRepair(FlotillaClusterOptions options, ILogger<ContainerNameRepair> log) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        foreach (var r in await RunAsync(options.PostgresConnectionString, options.Schema, cancellationToken))
            log.LogWarning("Container {Id} renamed from {From} to {To}: another container held its name (written before names were unique)",
                r.ContainerId[..Math.Min(12, r.ContainerId.Length)], r.From, r.To);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public static async Task<IReadOnlyList<ContainerNameRepaired>> RunAsync(string connectionString, string schema, CancellationToken cancellationToken = default)
    {
        var table = $"{schema}.mt_doc_containerview";
        List<(string ContainerId, string Name)> holders = [];
        HashSet<string> taken = new(StringComparer.Ordinal);
        await using (var connection = new NpgsqlConnection(connectionString))
        {
            await connection.OpenAsync(cancellationToken);
            await using (var check = new NpgsqlCommand("SELECT to_regclass(@table) IS NOT NULL, to_regclass(@index) IS NOT NULL", connection))
            {
                check.Parameters.AddWithValue("table", table);
                check.Parameters.AddWithValue("index", $"{schema}.{FlotillaStore.ContainerNameIndex}");
                await using var reader = await check.ExecuteReaderAsync(cancellationToken);
                await reader.ReadAsync(cancellationToken);
                // A new store, or one whose names are unique already: nothing to do.
                if (!reader.GetBoolean(0) || reader.GetBoolean(1)) return [];
            }
            await using (var names = new NpgsqlCommand($"SELECT data ->> 'ContainerId', data ->> 'Name' FROM {table} ORDER BY data ->> 'Name', (data ->> 'CreatedAt')::timestamptz, id", connection))
            await using (var reader = await names.ExecuteReaderAsync(cancellationToken))
                while (await reader.ReadAsync(cancellationToken))
                    holders.Add((reader.GetString(0), reader.GetString(1)));
        }
        foreach (var (_, name) in holders) taken.Add(name);
        var losers = holders.GroupBy(h => h.Name, StringComparer.Ordinal).SelectMany(g => g.Skip(1)).ToList();
        if (losers.Count == 0) return [];

        using var store = FlotillaStore.Create(connectionString, schema, uniqueContainerNames: false);
        var journal = new MartenEventJournal(store);
        var repaired = new List<ContainerNameRepaired>();
        foreach (var (containerId, name) in losers)
        {
            var to = $"{name}-{containerId[..Math.Min(12, containerId.Length)]}";
            for (var n = 2; taken.Contains(to); n++) to = $"{name}-{containerId[..Math.Min(12, containerId.Length)]}-{n}";
            taken.Add(to);
            var key = ContainerStreams.Key(containerId);
            var stream = await journal.ReadAsync(key, cancellationToken);
            await journal.AppendAsync(key, stream.Version, [new ContainerRenamed(containerId, name, to, DateTimeOffset.UtcNow)],
                new EventMetadata("system", "startup", Guid.NewGuid().ToString("N"), null), cancellationToken);
            repaired.Add(new ContainerNameRepaired(containerId, name, to));
        }
        return repaired;
    }
}
