using Akka.Actor;
using Flotilla.Cluster.EventStore;
using Flotilla.Cluster.Hosting;
using Flotilla.Gateway;
using Flotilla.NodeRuntime.Host;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Flotilla.Cli.Hosting;

/// <summary><c>flotilla up</c>: PostgreSQL (embedded unless given), one node and one gateway in this process.</summary>
public static class AllInOneHost
{
    public static async Task<int> RunAsync(UpSettings settings, CancellationToken cancellationToken)
    {
        DataRootPermissions.Secure(settings.DataRoot);

        using var loggerFactory = ConsoleLogging.Factory(settings.LogLevel);
        var log = loggerFactory.CreateLogger("flotilla");

        await using var postgres = settings.Postgres is null
            ? await EmbeddedPostgres.StartAsync(settings.DataRoot, loggerFactory.CreateLogger<EmbeddedPostgres>(), cancellationToken)
            : null;
        var connectionString = settings.Postgres ?? postgres!.ConnectionString;
        // The embedded server's user is its superuser; an external one may be given a restricted role.
        if (settings.Postgres is not null)
            settings = settings with { DatabaseIdentity = await DatabaseRoles.IdentifyAsync(connectionString, FlotillaStore.DefaultSchema, cancellationToken) };

        var facts = await HostFacts.ProbeAsync(settings.Runtime, cancellationToken);
        await using var app = Build(settings, connectionString, facts);
        if (settings.Tls is not { VerifyClients: true } && app.Services.GetRequiredService<GatewayOptions>().DockerApi is { } tcpApi)
            await PlainTcpWarning.WarnAsync(tcpApi, settings.PlainTcpExplicit, cancellationToken);
        var nodeName = app.Services.GetRequiredService<FlotillaClusterOptions>().NodeName;
        var dockerApi = app.Services.GetRequiredService<GatewayOptions>().DockerApi;
        var http = app.Services.GetRequiredService<GatewayOptions>().NativeApi;
        var registry = app.Services.GetRequiredService<GatewayOptions>().Registry;
        await app.StartAsync(cancellationToken);
        // The embedded server's shutdown checkpoint is most of its stop: begun here, it overlaps the host's own stop.
        var checkpoint = Task.CompletedTask;
        if (postgres is not null) app.Lifetime.ApplicationStopping.Register(() => checkpoint = postgres.CheckpointAsync());

        var system = app.Services.GetRequiredService<ActorSystem>();
        await WhenMemberUp(system).WaitAsync(TimeSpan.FromSeconds(60), cancellationToken);

        var scheme = settings.Tls is null ? "http" : "https";
        var ownSocket = app.Services.GetRequiredService<OwnDockerSocket>().Path;
        Console.WriteLine($"Flotilla {GatewayInfo.AssemblyVersion} is ready on node {nodeName} ({facts.OciRuntime}).");
        if (ownSocket is not null) Console.WriteLine($"  Docker API  unix://{ownSocket}");
        if (dockerApi is not null)
            Console.WriteLine($"  {(ownSocket is null ? "Docker API" : "          ")}  tcp://{dockerApi}{(settings.Tls is null ? " (plain TCP)" : settings.Tls.VerifyClients ? " (TLS, client certificates required)" : " (TLS)")}");
        Console.WriteLine($"  native API  {scheme}://{http} (token: {Gateway.Listeners.NativeApiTokens.FileOf(settings.DataRoot, Gateway.Listeners.NativeRole.Admin)})");
        Console.WriteLine($"  registry    {scheme}://{registry}");
        Console.WriteLine($"  cluster     {Akka.Cluster.Cluster.Get(system).SelfAddress}");
        Console.WriteLine($"  data        {settings.DataRoot}{(postgres is null ? "" : $" (embedded PostgreSQL at {postgres.DataDirectory})")}");
        if (ownSocket == "/var/run/docker.sock") Console.WriteLine("The docker CLI finds the socket by itself: run `docker version`.");
        else if (ownSocket is not null) Console.WriteLine($"export DOCKER_HOST=unix://{ownSocket}");
        else if (dockerApi is not null) Console.WriteLine($"export DOCKER_HOST=tcp://{dockerApi}{(settings.Tls is null ? "" : " DOCKER_TLS_VERIFY=1")}");
        else Console.WriteLine("No Docker API listener: the socket is owned by another daemon and no --docker-api was given.");

        try
        {
            await app.WaitForShutdownAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
        }
        log.LogInformation("Stopping");
        await app.StopAsync(CancellationToken.None);
        await checkpoint;
        return 0;
    }

    /// <summary>The all-in-one process as a web application, not yet started (tests start it too).</summary>
    public static WebApplication Build(UpSettings settings, string connectionString, HostFacts facts, string schema = FlotillaStore.DefaultSchema,
        Action<IServiceCollection>? configureServices = null)
    {
        var nodeName = settings.NodeName ?? facts.Hostname;
        // The all-in-one process founds its own cluster, so it makes its own CA on the first start: zero configuration,
        // and its loopback cluster port is as closed to other local users as a multi-host cluster's is to strangers.
        var tls = ClusterIdentity.Resolve(settings.DataRoot, Flotilla.Cluster.Security.ClusterRole.Node, nodeName, ["127.0.0.1", "localhost"],
            founding: true, new ClusterPkiFlags());
        return FlotillaProcess.Build(new ProcessSettings
        {
            NodeName = nodeName,
            Tls = tls,
            Roles = [FlotillaClusterOptions.NodeRole, FlotillaClusterOptions.GatewayRole],
            DataRoot = settings.DataRoot,
            DockerApi = settings.DockerApi is { } tcp ? Endpoints.Parse(tcp, "--docker-api") : null,
            NativeApi = Endpoints.Parse(settings.Http, "--http"),
            Registry = Endpoints.Parse(settings.Registry, "--registry"),
            DockerSocket = settings.DockerSocket,
            RegistryAnonymousPull = settings.RegistryAnonymousPull,
            RegistryRealm = settings.RegistryRealm,
            InsecureRegistries = ProcessSettings.ParseInsecureRegistries(settings.InsecureRegistries ?? []),
            ClientTls = settings.Tls,
            Browsers = settings.Browsers ?? Gateway.Listeners.BrowserPolicy.Default,
            LogLevel = settings.LogLevel,
            DatabaseIdentity = settings.DatabaseIdentity,
        }, connectionString, facts, schema, configureServices);
    }

    public static Task WhenMemberUp(ActorSystem system)
    {
        var up = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Akka.Cluster.Cluster.Get(system).RegisterOnMemberUp(() => up.TrySetResult());
        return up.Task;
    }
}
