namespace Flotilla.Cli.Hosting;

/// <summary>Flags of <c>flotilla up</c>, after environment fallbacks.</summary>
/// <param name="DockerApi">The Docker API on TCP (<c>--docker-api</c>/<c>-H</c>), or null for the unix socket only.</param>
public sealed record UpSettings(
    string? DockerApi,
    string Registry,
    string Http,
    string DataRoot,
    string? Postgres,
    string? NodeName,
    string? Runtime,
    string RegistryAnonymousPull = "auto",
    string? DockerSocket = null,
    IReadOnlyList<string>? InsecureRegistries = null,
    string? RegistryRealm = null,
    Flotilla.Gateway.Listeners.ClientTls? Tls = null,
    Flotilla.Gateway.Listeners.BrowserPolicy? Browsers = null,
    bool PlainTcpExplicit = false,
    Microsoft.Extensions.Logging.LogLevel LogLevel = Microsoft.Extensions.Logging.LogLevel.Warning,
    Flotilla.Cluster.EventStore.DatabaseIdentity DatabaseIdentity = Flotilla.Cluster.EventStore.DatabaseIdentity.Admin);
