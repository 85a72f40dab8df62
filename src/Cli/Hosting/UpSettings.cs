namespace Flotilla.Cli.Hosting;

/// <summary>Flags of <c>flotilla up</c>, after environment fallbacks.</summary>
public sealed record UpSettings(
    string DockerApi,
    string Registry,
    string Http,
    string DataRoot,
    string? Postgres,
    string? NodeName,
    string? Runtime,
    string RegistryAnonymousPull = "auto",
    string? DockerSocket = null,
    IReadOnlyList<string>? InsecureRegistries = null,
    string? RegistryRealm = null);
