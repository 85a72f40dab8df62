using System.CommandLine;
using Flotilla.Cli.Hosting;

namespace Flotilla.Cli.Commands;

/// <summary><c>flotilla up</c>: every role in one process, zero config.</summary>
public static class UpCommand
{
    public static Command Create()
    {
        // As dockerd: the unix socket by default (the docker CLI's default too); TCP only when asked for.
        var dockerApi = Flags.OptionalWithEnv("--docker-api", "FLOTILLA_DOCKER_API",
            "Docker Engine API on TCP too, HOST:PORT or tcp://HOST:PORT (default: none, the unix socket only); use --tlsverify off loopback");
        dockerApi.Aliases.Add("-H");
        var registry = Flags.WithEnv("--registry", "FLOTILLA_REGISTRY", "127.0.0.1:5000", "registry listen address");
        var http = Flags.Http();
        var data = Flags.WithEnv("--data", "FLOTILLA_DATA", "/var/lib/flotilla", "data directory");
        var postgres = Flags.OptionalWithEnv("--postgres", "FLOTILLA_POSTGRES", "PostgreSQL connection string (default: embedded)");
        var postgresFile = Flags.PostgresFile();
        var name = Flags.OptionalWithEnv("--name", "FLOTILLA_NODE_NAME", "node name (default: hostname)");
        var anonymousPull = Flags.WithEnv("--registry-anonymous-pull", "FLOTILLA_REGISTRY_ANONYMOUS_PULL", "auto",
            "may anyone pull from the registry without logging in once users exist: auto (yes on loopback), true, false");
        var realm = Flags.OptionalWithEnv("--registry-realm", "FLOTILLA_REGISTRY_REALM",
            "token realm URL the registry announces (default: http://<registry listen address>/token; set it behind a proxy or DNS name)");
        var dockerSocket = Flags.WithEnv("--docker-socket", "FLOTILLA_DOCKER_SOCKET", "/var/run/docker.sock",
            "Docker API unix socket, mode 0660 and group docker when it exists (left alone when a live daemon owns it; 'none' turns it off)");
        var insecureRegistries = Flags.InsecureRegistry();
        var runtime = Flags.OptionalWithEnv("--runtime", "FLOTILLA_RUNTIME", "OCI runtime: runc or crun (default: the one that works here)");
        var listeners = new ClientListenerFlags();
        var logLevel = Flags.LogLevel();

        var command = new Command("up", "Run Flotilla (node, gateway, embedded PostgreSQL) in this process")
        {
            dockerApi, registry, http, data, postgres, postgresFile, name, runtime, anonymousPull, realm, dockerSocket, insecureRegistries, logLevel,
        };
        foreach (var option in listeners.All) command.Options.Add(option);
        command.SetAction(async (result, cancellationToken) =>
        {
            UpSettings settings;
            try
            {
                var tcp = result.GetValue(dockerApi) is { Length: > 0 } value && value != "none" ? value : null;
                if (tcp is not null && tcp.StartsWith("unix://", StringComparison.OrdinalIgnoreCase))
                    throw new ArgumentException("--docker-api/-H takes a TCP address; the unix socket is --docker-socket");
                settings = new UpSettings(tcp, result.GetValue(registry)!, result.GetValue(http)!,
                    Path.GetFullPath(result.GetValue(data)!), Flags.Postgres(result.GetValue(postgres), result.GetValue(postgresFile)),
                    result.GetValue(name), result.GetValue(runtime), result.GetValue(anonymousPull)!,
                    result.GetValue(dockerSocket) is "none" or "" ? null : result.GetValue(dockerSocket),
                    result.GetValue(insecureRegistries), result.GetValue(realm), listeners.ParseTls(result), listeners.Browsers(result), listeners.PlainExplicitly(result),
                    Hosting.ConsoleLogging.Parse(result.GetValue(logLevel)!));
                PlainTcpWarning.RequireTlsBeyondLoopback(
                    [("--registry", Endpoints.Parse(settings.Registry, "--registry")), ("--http", Endpoints.Parse(settings.Http, "--http"))],
                    settings.Tls is not null, settings.PlainTcpExplicit);
            }
            catch (ArgumentException ex)
            {
                Console.Error.WriteLine($"flotilla up: {ex.Message}");
                return 2;
            }
            try
            {
                return await AllInOneHost.RunAsync(settings, cancellationToken);
            }
            catch (ArgumentException ex) when (ex.Message.StartsWith("--", StringComparison.Ordinal))
            {
                // A flag's file that cannot be used (--tlscert, --tlscacert, --docker-socket): found while building the host.
                Console.Error.WriteLine($"flotilla up: {ex.Message}");
                return 2;
            }
        });
        return command;
    }
}
