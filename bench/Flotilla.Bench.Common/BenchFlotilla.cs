using Akka.Actor;
using Flotilla.Cli.Hosting;
using Flotilla.NodeRuntime.Host;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace Flotilla.Bench.Common;

/// <summary>Flotilla as `flotilla up` builds it (embedded PostgreSQL + the all-in-one host) in this process, on free ports.</summary>
public sealed class BenchFlotilla : IAsyncDisposable
{
    private readonly string _root;
    private EmbeddedPostgres? _postgres;

    private BenchFlotilla(string root) => _root = root;

    public WebApplication App { get; private set; } = null!;
    public int DockerPort { get; } = BenchStats.FreePort();
    public int RegistryPort { get; } = BenchStats.FreePort();
    public int HttpPort { get; } = BenchStats.FreePort();
    public string DataRoot => Path.Combine(_root, "flotilla");

    /// <param name="root">A short path (the embedded PostgreSQL's socket path must stay under 107 bytes).</param>
    public static async Task<BenchFlotilla> StartAsync(string root, CancellationToken ct)
    {
        var flotilla = new BenchFlotilla(root);
        try
        {
            flotilla._postgres = await EmbeddedPostgres.StartAsync(Path.Combine(root, "pg"), null, ct);
            var facts = await HostFacts.ProbeAsync(null, ct);
            var settings = new UpSettings($"127.0.0.1:{flotilla.DockerPort}", $"127.0.0.1:{flotilla.RegistryPort}",
                $"127.0.0.1:{flotilla.HttpPort}", flotilla.DataRoot, flotilla._postgres.ConnectionString, "bench-node", null);
            flotilla.App = AllInOneHost.Build(settings, flotilla._postgres.ConnectionString, facts);
            await flotilla.App.StartAsync(ct);
            await AllInOneHost.WhenMemberUp(flotilla.App.Services.GetRequiredService<ActorSystem>()).WaitAsync(TimeSpan.FromSeconds(60), ct);
            return flotilla;
        }
        catch
        {
            await flotilla.DisposeAsync();
            throw;
        }
    }

    /// <summary>The real docker CLI against this host (its own DOCKER_CONFIG under the root).</summary>
    public Task<ProcResult> DockerAsync(CancellationToken ct, params string[] args) =>
        Proc.RunAsync("docker", ["-H", $"tcp://127.0.0.1:{DockerPort}", .. args],
            new Dictionary<string, string> { ["DOCKER_CONFIG"] = Path.Combine(_root, "docker-config") }, ct);

    public async ValueTask DisposeAsync()
    {
        if (App is not null)
        {
            try { await App.StopAsync(CancellationToken.None); } catch (Exception e) { Console.Error.WriteLine($"host stop: {e.Message}"); }
            await App.DisposeAsync();
        }
        if (_postgres is not null) await _postgres.DisposeAsync();
    }
}
