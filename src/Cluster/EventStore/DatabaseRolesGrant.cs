using Marten;
using Microsoft.Extensions.Hosting;

namespace Flotilla.Cluster.EventStore;

/// <summary>At the admin identity's start, after the schema is migrated: the restricted roles and their grants.</summary>
public sealed class DatabaseRolesGrant(IDocumentStore store) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => DatabaseRoles.GrantAsync(store, cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
