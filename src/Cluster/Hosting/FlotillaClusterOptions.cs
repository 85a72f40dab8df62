namespace Flotilla.Cluster.Hosting;

/// <summary>Everything a process needs to take part in a Flotilla cluster.</summary>
public sealed record FlotillaClusterOptions
{
    public const string NodeRole = "node";
    public const string GatewayRole = "gateway";

    public required string NodeName { get; init; }
    public IReadOnlyList<string> Roles { get; init; } = [NodeRole, GatewayRole];

    /// <summary>Cluster transport address; port 0 picks a free one (fine for a single process).</summary>
    public string BindHost { get; init; } = "127.0.0.1";
    public int BindPort { get; init; }

    /// <summary>Seed addresses as <c>host:port</c>. Empty: this process founds the cluster and joins itself.</summary>
    public IReadOnlyList<string> Seeds { get; init; } = [];

    /// <summary>
    /// The cluster certificates: Akka.Remote runs over TLS and requires a peer certificate of the cluster CA both ways.
    /// Null (plain TCP, anyone who reaches the port is a member) is allowed on loopback only, for tests in one process.
    /// </summary>
    public Security.ClusterTls? Tls { get; init; }

    /// <summary>The transport scheme in member addresses: <c>akka.ssl.tcp</c> with TLS, <c>akka.tcp</c> without.</summary>
    public string Protocol => Tls is null ? "akka.tcp" : "akka.ssl.tcp";

    public required string PostgresConnectionString { get; init; }
    public string Schema { get; init; } = EventStore.FlotillaStore.DefaultSchema;

    /// <summary>
    /// What the connection's PostgreSQL user may do: the admin migrates the schema and grants the restricted roles at
    /// start; a restricted process (<see cref="EventStore.DatabaseRoles"/>) only uses it. See <see cref="EventStore.DatabaseRoles.IdentifyAsync"/>.
    /// </summary>
    public EventStore.DatabaseIdentity DatabaseIdentity { get; init; } = EventStore.DatabaseIdentity.Admin;

    public IReadOnlyDictionary<string, string> Labels { get; init; } = new Dictionary<string, string>();

    /// <summary>How long the Split Brain Resolver waits for a stable membership before downing.</summary>
    public TimeSpan StableAfter { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How the scheduler places containers that do not ask otherwise: spread or binpack.</summary>
    public string PlacementStrategy { get; init; } = Scheduling.PlacementStrategies.Spread;

    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Silence tolerated before a peer is unreachable (Akka's default is 3 s).</summary>
    public TimeSpan AcceptableHeartbeatPause { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>
    /// A node of a multi-host cluster hands its containers over when it goes: it stops them when the cluster downs
    /// it or it leaves, and the scheduler fails containers over to the others. Off for the all-in-one process, whose
    /// containers outlive it and are re-adopted on the next start (there is nowhere else to go).
    /// </summary>
    public bool HandsOverContainers { get; init; }

    /// <summary>
    /// The least severe of Akka's log events this process writes (<c>--log-level</c>): Akka's own level follows it, so
    /// events below it are never made, and those above go through the process's loggers.
    /// </summary>
    public Microsoft.Extensions.Logging.LogLevel LogLevel { get; init; } = Microsoft.Extensions.Logging.LogLevel.Warning;

    /// <summary>How often the global event sequence is checkpointed for tamper evidence.</summary>
    public TimeSpan AuditCheckpointInterval { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A gateway's audit checkpoint key file (<see cref="Audit.AuditCheckpointKey"/>), made on first need; null on a
    /// process that must not hold it (a node): it neither signs nor checks checkpoint signatures.
    /// </summary>
    public string? AuditKeyFile { get; init; }

    public bool HasRole(string role) => Roles.Contains(role);
}
