using System.CommandLine;
using Flotilla.Cli.Hosting;

namespace Flotilla.Cli.Commands;

/// <summary><c>flotilla up</c>: every role in one process, zero config.</summary>
public static class UpCommand
{
    public static Command Create()
    {
        var dockerApi = Flags.WithEnv("--docker-api", "FLOTILLA_DOCKER_API", "127.0.0.1:2375", "Docker Engine API listen address");
        var registry = Flags.WithEnv("--registry", "FLOTILLA_REGISTRY", "127.0.0.1:5000", "registry listen address");
        var http = Flags.Http();
        var data = Flags.WithEnv("--data", "FLOTILLA_DATA", "/var/lib/flotilla", "data directory");
        var postgres = Flags.OptionalWithEnv("--postgres", "FLOTILLA_POSTGRES", "PostgreSQL connection string (default: embedded)");
        var name = Flags.OptionalWithEnv("--name", "FLOTILLA_NODE_NAME", "node name (default: hostname)");
        var anonymousPull = Flags.WithEnv("--registry-anonymous-pull", "FLOTILLA_REGISTRY_ANONYMOUS_PULL", "auto",
            "may anyone pull from the registry without logging in once users exist: auto (yes on loopback), true, false");
        var realm = Flags.OptionalWithEnv("--registry-realm", "FLOTILLA_REGISTRY_REALM",
            "token realm URL the registry announces (default: http://<registry listen address>/token; set it behind a proxy or DNS name)");
        var dockerSocket = Flags.WithEnv("--docker-socket", "FLOTILLA_DOCKER_SOCKET", "/var/run/docker.sock",
            "Docker API unix socket too (left alone when a live daemon owns it; 'none' turns it off)");
        var insecureRegistries = Flags.InsecureRegistry();
        var runtime = Flags.OptionalWithEnv("--runtime", "FLOTILLA_RUNTIME", "OCI runtime: runc or crun (default: the one that works here)");

        var command = new Command("up", "Run Flotilla (node, gateway, embedded PostgreSQL) in this process")
        {
            dockerApi, registry, http, data, postgres, name, runtime, anonymousPull, realm, dockerSocket, insecureRegistries,
        };
        command.SetAction((result, cancellationToken) => AllInOneHost.RunAsync(new UpSettings(
            result.GetValue(dockerApi)!, result.GetValue(registry)!, result.GetValue(http)!,
            Path.GetFullPath(result.GetValue(data)!), result.GetValue(postgres), result.GetValue(name), result.GetValue(runtime),
            result.GetValue(anonymousPull)!, result.GetValue(dockerSocket) is "none" or "" ? null : result.GetValue(dockerSocket),
            result.GetValue(insecureRegistries), result.GetValue(realm)),
            cancellationToken));
        return command;
    }
}
