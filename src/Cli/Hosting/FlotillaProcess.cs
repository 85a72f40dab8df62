using System.Net;
using Flotilla.Cluster.EventStore;
using Flotilla.Cluster.Hosting;
using Flotilla.Cluster.Nodes;
using Flotilla.Cluster.Security;
using Flotilla.Gateway;
using Flotilla.Gateway.Registry.Auth;
using Flotilla.NodeRuntime.Containers;
using Flotilla.NodeRuntime.Distribution;
using Flotilla.NodeRuntime.Fencing;
using Flotilla.NodeRuntime.Host;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Oci;
using Flotilla.NodeRuntime.Registry;
using Flotilla.NodeRuntime.Volumes;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Flotilla.Cli.Hosting;

/// <summary>What one Flotilla process is: its roles, name, listeners and cluster transport.</summary>
public sealed record ProcessSettings
{
    public required string NodeName { get; init; }
    public required IReadOnlyList<string> Roles { get; init; }
    public required string DataRoot { get; init; }

    /// <summary>Docker API listener: a gateway's public endpoint, or a node's own (for its containers' streams and blobs); null for the socket only.</summary>
    public required IPEndPoint? DockerApi { get; init; }
    public IPEndPoint? NativeApi { get; init; }
    public IPEndPoint? Registry { get; init; }
    public string? DockerSocket { get; init; }
    public string RegistryAnonymousPull { get; init; } = "auto";
    /// <summary><c>--registry-realm</c>: the token realm URL to announce; null derives it from the listen address.</summary>
    public string? RegistryRealm { get; init; }

    /// <summary>TLS of the client listeners (<c>--tlscert</c>…), or none.</summary>
    public Gateway.Listeners.ClientTls? ClientTls { get; init; }

    /// <summary>Browser origins and host names the client listeners accept.</summary>
    public Gateway.Listeners.BrowserPolicy Browsers { get; init; } = Gateway.Listeners.BrowserPolicy.Default;

    /// <summary>Registries this process's engine reaches over plain HTTP or unverified TLS (<c>--insecure-registry</c>).</summary>
    public InsecureRegistries InsecureRegistries { get; init; } = InsecureRegistries.None;

    public static InsecureRegistries ParseInsecureRegistries(IEnumerable<string> values)
    {
        try
        {
            return InsecureRegistries.Parse(values);
        }
        catch (FormatException ex)
        {
            throw new ArgumentException($"--insecure-registry: {ex.Message}", ex);
        }
    }

    /// <summary>Cluster transport (<c>--bind</c>); port 0 picks a free one.</summary>
    public string BindHost { get; init; } = "127.0.0.1";
    public int BindPort { get; init; }
    public IReadOnlyList<string> Seeds { get; init; } = [];

    /// <summary>The cluster certificates (<see cref="ClusterIdentity"/>); null: plain TCP, loopback only (tests).</summary>
    public Flotilla.Cluster.Security.ClusterTls? Tls { get; init; }

    /// <summary>A node's Docker API in plain HTTP although the cluster has certificates (<c>--insecure-node-api</c>).</summary>
    public bool InsecureNodeApi { get; init; }

    /// <summary>A gateway's listener for peers fetching blobs imported through it (mutual TLS); null: none.</summary>
    public IPEndPoint? PeerApi { get; init; }

    /// <summary>On the process that holds the CA key: the join-token enrollment listener (<c>--enroll</c>).</summary>
    public Flotilla.Gateway.Http.EnrollmentOptions? Enrollment { get; init; }
    public IReadOnlyDictionary<string, string> Labels { get; init; } = new Dictionary<string, string>();
    public TimeSpan? StableAfter { get; init; }
    public TimeSpan? AcceptableHeartbeatPause { get; init; }
    public TimeSpan? HeartbeatInterval { get; init; }

    /// <summary>A node of a multi-host cluster stops its containers when it leaves; the all-in-one keeps them for re-adoption.</summary>
    public bool HandsOverContainers { get; init; }

    /// <summary>The cgroup every container of this host goes under (<c>--cgroup-parent</c>, dockerd's flag): "/flotilla" → "/flotilla/&lt;id&gt;".</summary>
    public string CgroupParent { get; init; } = CgroupParents.Default;

    /// <summary>The console's level (<c>--log-level</c>), Akka's included.</summary>
    public LogLevel LogLevel { get; init; } = LogLevel.Warning;

    /// <summary>The PostgreSQL user's standing (<see cref="DatabaseRoles.IdentifyAsync"/>): admin migrates and grants, restricted only uses.</summary>
    public DatabaseIdentity DatabaseIdentity { get; init; } = DatabaseIdentity.Admin;

    public bool IsNode => Roles.Contains(FlotillaClusterOptions.NodeRole);
    public bool IsGateway => Roles.Contains(FlotillaClusterOptions.GatewayRole);

    /// <summary>A node-only process's Docker API is the node API: for the cluster only, over mutual TLS unless told otherwise.</summary>
    public Flotilla.Cluster.Security.ClusterTls? NodeApiTls => IsNode && !IsGateway && !InsecureNodeApi ? Tls : null;
}

/// <summary>
/// Builds one Flotilla process for any mix of roles: <c>node</c> (runtime, shards, its own Docker API),
/// <c>gateway</c> (Docker API, registry and native API for the whole cluster), or both (<c>flotilla up</c>).
/// </summary>
public static class FlotillaProcess
{
    /// <summary>
    /// The Docker API address peers dial: a listener on every address (0.0.0.0, ::) is reached at the cluster bind address.
    /// </summary>
    public static string DialableEndpoint(ProcessSettings settings) => settings.DockerApi is { } api ? Dialable(settings, api) : "";

    private static string Dialable(ProcessSettings settings, IPEndPoint endpoint) =>
        endpoint.Address.Equals(IPAddress.Any) || endpoint.Address.Equals(IPAddress.IPv6Any)
            ? $"{settings.BindHost}:{endpoint.Port}"
            : endpoint.ToString();

    /// <summary>
    /// What this process registers for peers to dial: its node API, a gateway's peer listener, or a node's plain Docker
    /// API (<c>--insecure-node-api</c>, the all-in-one). Never a gateway's Docker API: that one is its clients' (often on
    /// loopback, which no other host reaches), so a gateway without a peer listener registers nothing.
    /// </summary>
    public static string RegisteredEndpoint(ProcessSettings settings) =>
        settings.NodeApiTls is not null ? new ClusterEndpoint(true, DialableEndpoint(settings)).Register()
        : settings.PeerApi is { } peer && settings.Tls is not null ? new ClusterEndpoint(true, Dialable(settings, peer)).Register()
        : settings.IsNode ? DialableEndpoint(settings)
        : "";

    /// <param name="lease">This host's lease (<see cref="HostLease"/>), taken already or taken when the process starts; null: none.</param>
    public static WebApplication Build(ProcessSettings settings, string connectionString, HostFacts facts,
        string schema = FlotillaStore.DefaultSchema, Action<IServiceCollection>? configureServices = null, HostLeaseKeeper? lease = null)
    {
        // Before any store opens its directories: an older version's 0755 tree is closed here.
        DataRootPermissions.Secure(settings.DataRoot);
        var defaults = new FlotillaClusterOptions { NodeName = settings.NodeName, PostgresConnectionString = connectionString };
        var cluster = defaults with
        {
            Roles = settings.Roles,
            Schema = schema,
            DatabaseIdentity = settings.DatabaseIdentity,
            // Only gateways hold the key audit checkpoints are signed with: a node that rewrites history cannot re-sign it.
            AuditKeyFile = settings.IsGateway ? Path.Combine(ClusterPkiFiles.In(settings.DataRoot), Flotilla.Cluster.Audit.AuditCheckpointKey.FileName) : null,
            BindHost = settings.BindHost,
            BindPort = settings.BindPort,
            Seeds = settings.Seeds,
            Tls = settings.Tls,
            Labels = settings.Labels,
            StableAfter = settings.StableAfter ?? defaults.StableAfter,
            AcceptableHeartbeatPause = settings.AcceptableHeartbeatPause ?? defaults.AcceptableHeartbeatPause,
            HeartbeatInterval = settings.HeartbeatInterval ?? defaults.HeartbeatInterval,
            HandsOverContainers = settings.HandsOverContainers,
            LogLevel = settings.LogLevel,
        };
        var self = new NodeDescription(settings.NodeName, facts.Hostname, cluster.Roles, facts.Cpus, facts.MemoryBytes, facts.Kernel,
            settings.IsNode ? facts.OciRuntime : "none", cluster.Labels, RegisteredEndpoint(settings),
            settings.IsNode ? VolumeStore.RootOf(settings.DataRoot) : "");

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.UseFlotillaConsole(settings.LogLevel);
        builder.Services.Configure<HostOptions>(o =>
        {
            // The bound for a node's containers to stop when it leaves (TERM, then KILL after their grace); open
            // streams do not wait for it (StreamsEndOnShutdown).
            o.ShutdownTimeout = TimeSpan.FromSeconds(20);
            // Kestrel's drain, the actor system's coordinated shutdown and the rest stop together, not one after another.
            o.ServicesStopConcurrently = true;
        });
        if (lease is not null)
        {
            // Before the cluster's services: its events are recorded, and its renewals go on, before the actor system starts.
            builder.Services.AddSingleton(lease);
            builder.Services.AddSingleton(lease.Fence);
            builder.Services.AddHostedService(sp => lease.Attach(sp.GetRequiredService<IEventJournal>()));
        }
        builder.Services.AddFlotillaCluster(cluster, self);
        // Every process keeps image content: nodes run from it; a gateway holds what is imported, loaded or
        // built through it, and peers fetch it from there.
        var images = new NodeImageStore(settings.DataRoot);
        builder.Services.AddSingleton(images);
        builder.Services.AddSingleton(new ImageDistribution(images, new RegistryClientOptions { InsecureRegistries = settings.InsecureRegistries }));
        // Volumes live on nodes only: a gateway keeps none (see VolumeEndpoints).
        if (settings.IsNode) builder.Services.AddSingleton(new VolumeStore(settings.DataRoot));
        // The registry's own content store: image GC and registry GC never see each other's blobs.
        // FLOTILLA_REGISTRY_FSYNC=0 publishes blobs without fsync, as distribution does (faster pushes; a
        // power cut, not a crash, may then leave a published blob short).
        builder.Services.AddSingleton(new RegistryBlobStore(Path.Combine(settings.DataRoot, "registry"),
            durable: Environment.GetEnvironmentVariable("FLOTILLA_REGISTRY_FSYNC") != "0"));
        if (settings.IsNode && facts.OciRuntimePath is { } runtimePath)
        {
            var monitor = new ConmonMonitor(new ConmonOptions { DataRoot = settings.DataRoot },
                new RuncDriver(runtimePath, Path.Combine(settings.DataRoot, "oci")), new OciBundleBuilder(new OciBundleOptions { CgroupParent = settings.CgroupParent }));
            builder.Services.AddSingleton(monitor);
            builder.Services.AddSingleton(sp => new NodeContainerRuntime(settings.DataRoot, images, monitor, sp.GetService<IImageContentSource>()));
        }
        var listeners = new GatewayOptions(settings.DockerApi, settings.NativeApi, settings.Registry, settings.DockerSocket)
        {
            Tls = settings.ClientTls,
            Browsers = settings.Browsers,
            DockerApiTls = settings.NodeApiTls,
            PeerApi = settings.Tls is null ? null : settings.PeerApi,
            PeerApiTls = settings.PeerApi is null ? null : settings.Tls,
            KeepsImages = settings.IsNode || RegisteredEndpoint(settings).Length > 0,
            Enrollment = settings.Enrollment,
        };
        builder.AddFlotillaGateway(listeners,
            new GatewayInfo(GatewayInfo.AssemblyVersion, settings.NodeName, settings.DataRoot, self, facts));
        if (settings.Registry is { } registry) builder.AddRegistryAuth(registry, settings.DataRoot, settings.RegistryAnonymousPull, settings.RegistryRealm);

        configureServices?.Invoke(builder.Services);
        var app = builder.Build();
        app.MapFlotillaGateway();
        return app;
    }

    /// <summary>
    /// A host of a multi-host cluster runs containers only under its lease, with a watchdog that outlives the engine
    /// (see <see cref="HostLeaseKeeper"/>). The all-in-one has none: nobody else could start its containers, and they
    /// outlive it. Taken by <see cref="ClusterProcessHost"/> before anything else is built, so an engine restart
    /// confirms the lease as early as it can.
    /// </summary>
    public static HostLeaseKeeper? HostLease(ProcessSettings settings, string connectionString, ILoggerFactory logging,
        string schema = FlotillaStore.DefaultSchema)
    {
        if (!settings.IsNode || !settings.HandsOverContainers) return null;
        var paths = WatchdogPaths.Of(settings.DataRoot);
        var log = logging.CreateLogger<HostLeaseKeeper>();
        var watchdog = new WatchdogClient(paths, SelfCommand("watchdog", "--data", settings.DataRoot, "--cgroup-parent", settings.CgroupParent),
            message => log.LogInformation("{Message}", message));
        return new HostLeaseKeeper(new HostLeaseStore(connectionString, schema), HostFence.Leased(), watchdog, new CgroupFence(settings.CgroupParent),
            settings.NodeName, LeaseTiming.Default, log);
    }

    /// <summary>This program's own command line with other arguments: <c>dotnet flotilla.dll …</c> or the app host.</summary>
    public static IReadOnlyList<string> SelfCommand(params string[] args)
    {
        var process = Environment.ProcessPath ?? "dotnet";
        return Path.GetFileNameWithoutExtension(process) == "dotnet"
            ? [process, typeof(FlotillaProcess).Assembly.Location, .. args]
            : [process, .. args];
    }
}
