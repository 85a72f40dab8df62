using Akka.Actor;
using Flotilla.Cluster.EventStore;
using Flotilla.Gateway;
using Flotilla.NodeRuntime.Host;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Flotilla.Cli.Hosting;

/// <summary>Runs one <c>flotilla node</c> or <c>flotilla gateway</c> process against a shared PostgreSQL until it is stopped.</summary>
public static class ClusterProcessHost
{
    public static async Task<int> RunAsync(ProcessSettings settings, string connectionString, string? runtime, CancellationToken cancellationToken)
    {
        DataRootPermissions.Secure(settings.DataRoot);
        // First of all, the host lease: a restarted engine must confirm it before its watchdog's deadline passes.
        using var logging = ConsoleLogging.Factory(settings.LogLevel);
        try
        {
            settings = settings with { DatabaseIdentity = await DatabaseRoles.IdentifyAsync(connectionString, FlotillaStore.DefaultSchema, cancellationToken) };
        }
        catch (InvalidOperationException ex)
        {
            Console.Error.WriteLine($"flotilla {(settings.IsNode ? "node" : "gateway")}: {ex.Message}");
            return 2;
        }
        var lease = FlotillaProcess.HostLease(settings, connectionString, logging);
        if (lease is not null) await lease.TakeAsync(cancellationToken);
        var facts = await HostFacts.ProbeAsync(settings.IsNode ? runtime : null, cancellationToken);
        if (settings.IsNode && facts.OciRuntimePath is null)
        {
            Console.Error.WriteLine("flotilla node: no OCI runtime (runc or crun) found; install one (scripts/install-deps.sh)");
            if (lease is not null) await lease.ReleaseAsync(CancellationToken.None);
            return 1;
        }
        await using var app = FlotillaProcess.Build(settings, connectionString, facts, lease: lease);
        await app.StartAsync(cancellationToken);
        var system = app.Services.GetRequiredService<ActorSystem>();
        await AllInOneHost.WhenMemberUp(system).WaitAsync(TimeSpan.FromMinutes(2), cancellationToken);

        var role = settings.IsNode ? "node" : "gateway";
        Console.WriteLine($"Flotilla {GatewayInfo.AssemblyVersion} {role} {settings.NodeName} is up at {Akka.Cluster.Cluster.Get(system).SelfAddress}.");
        var scheme = settings.ClientTls is null ? "http" : "https";
        if (settings.NodeApiTls is not null) Console.WriteLine($"  node API    https://{settings.DockerApi} (cluster client certificates required)");
        else if (settings.DockerApi is { } dockerApi) Console.WriteLine($"  Docker API  tcp://{dockerApi}");
        if (app.Services.GetRequiredService<OwnDockerSocket>().Path is { } socket) Console.WriteLine($"  Docker API  unix://{socket}");
        if (settings.PeerApi is { } peer && settings.Tls is not null) Console.WriteLine($"  peer API    https://{peer} (cluster client certificates required)");
        if (settings.Tls is { } tls) Console.WriteLine($"  cluster     {tls.Self.Subject}, CA sha256 {Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(tls.Authority.RawData))}");
        if (settings.NativeApi is { } http)
            Console.WriteLine($"  native API  {scheme}://{http} (token: {Gateway.Listeners.NativeApiTokens.FileOf(settings.DataRoot, Gateway.Listeners.NativeRole.Admin)})");
        if (settings.Registry is { } registry) Console.WriteLine($"  registry    {scheme}://{registry}");
        Console.WriteLine($"  data        {settings.DataRoot}");

        // A process the cluster downed shuts its actor system down; the process follows. So does one that lost its
        // host lease: its containers are dead, and they may be starting elsewhere.
        var terminated = system.WhenTerminated;
        var stopped = app.WaitForShutdownAsync(cancellationToken);
        var leaseLost = app.Services.GetService<Flotilla.Cluster.Nodes.HostLeaseKeeper>()?.Lost ?? new TaskCompletionSource<string>().Task;
        var exitCode = 0;
        try
        {
            var first = await Task.WhenAny(terminated, stopped, leaseLost);
            if (first == terminated)
            {
                Console.Error.WriteLine($"{role} {settings.NodeName}: removed from the cluster; exiting");
                exitCode = 2;
            }
            else if (first == leaseLost)
            {
                Console.Error.WriteLine($"{role} {settings.NodeName}: lost its host lease ({await leaseLost}); its containers were killed; exiting");
                exitCode = 3;
            }
        }
        catch (OperationCanceledException)
        {
        }
        await app.StopAsync(CancellationToken.None);
        return exitCode;
    }
}
