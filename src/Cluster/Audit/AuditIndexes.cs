using Microsoft.Extensions.Hosting;

namespace Flotilla.Cluster.Audit;

/// <summary>Makes the audit indexes at startup, after Marten has applied its own schema.</summary>
public sealed class AuditIndexes(AuditQuery audit) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => audit.EnsureIndexesAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
