using System.Net;
using System.Text.Json;
using Akka.Actor;
using Flotilla.Cli.Hosting;
using Flotilla.Gateway.Listeners;
using Flotilla.NodeRuntime.Host;
using Flotilla.Tests.Infrastructure;
using Flotilla.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Flotilla.Tests.Gateway;

/// <summary>The all-in-one host, started on free ports, driven by the real docker CLI and raw HTTP.</summary>
public class RunningFlotilla : IAsyncLifetime
{
    public const string DockerCli = "docker";

    private readonly PostgresFixture _postgres = new();
    private WebApplication? _app;

    private string _connectionString = "";

    public int DockerPort { get; } = FreePort.Next();

    /// <summary>A Marten store on the host's database, to look at the events themselves.</summary>
    public Marten.DocumentStore OpenStore() => Flotilla.Cluster.EventStore.FlotillaStore.Create(_connectionString);
    public string ConnectionString => _connectionString;
    public int HttpPort { get; } = FreePort.Next();
    /// <summary>The built-in registry's listener (<c>--registry</c>).</summary>
    public int RegistryPort { get; } = FreePort.Next();
    public string DataRoot { get; } = Path.Combine(Path.GetTempPath(), "flotilla-gw-" + Guid.NewGuid().ToString("N")[..8]);
    /// <summary>The Docker API's unix socket (the CLI detaches with ctrl-p ctrl-q only through one).</summary>
    public string DockerSocket => Path.Combine(DataRoot, "docker.sock");
    public HttpClient Docker { get; private set; } = null!;
    /// <summary>The running host's services (its queries, image service, stores), for tests that act as another host.</summary>
    public IServiceProvider Services => _app?.Services ?? throw new InvalidOperationException("the host is not running");
    /// <summary>The native API with the admin token (<c>&lt;data&gt;/native-api.token</c>).</summary>
    public HttpClient Native { get; private set; } = null!;

    public string NativeToken(NativeRole role) => File.ReadAllText(NativeApiTokens.FileOf(DataRoot, role)).Trim();

    /// <summary>Environment for the flotilla CLI: where it finds the native API's token.</summary>
    public Dictionary<string, string> CliEnvironment => new() { ["FLOTILLA_DATA"] = DataRoot };
    public HttpClient Registry { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        await _postgres.InitializeAsync();
        _connectionString = await _postgres.NewDatabaseAsync("gateway");
        await StartHostAsync();
        Docker = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{DockerPort}/") };
        Native = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{HttpPort}/") };
        Native.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", NativeToken(NativeRole.Admin));
        Registry = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{RegistryPort}/") };
    }

    private async Task StartHostAsync()
    {
        var facts = await HostFacts.ProbeAsync(null);
        var settings = new UpSettings($"127.0.0.1:{DockerPort}", $"127.0.0.1:{RegistryPort}", $"127.0.0.1:{HttpPort}", DataRoot,
            _connectionString, "gw-node", null, DockerSocket: DockerSocket, InsecureRegistries: InsecureRegistries);
        _app = AllInOneHost.Build(settings, _connectionString, facts, configureServices: ConfigureServices);
        await _app.StartAsync();
        await AllInOneHost.WhenMemberUp(_app.Services.GetRequiredService<ActorSystem>()).WaitAsync(TimeSpan.FromSeconds(30));
    }

    /// <summary>Stops the host and starts a new one on the same data root, database and ports (state must come back from disk and Marten).</summary>
    public async Task RestartAsync()
    {
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
        await StartHostAsync();
    }

    /// <summary><c>--insecure-registry</c> values of the host.</summary>
    protected virtual IReadOnlyList<string> InsecureRegistries => [];

    /// <summary>Extra services a test class needs in the host (e.g. a hijack handler).</summary>
    protected virtual void ConfigureServices(Microsoft.Extensions.DependencyInjection.IServiceCollection services)
    {
    }

    public async Task DisposeAsync()
    {
        Docker?.Dispose();
        Native?.Dispose();
        Registry?.Dispose();
        if (_app is not null)
        {
            await DataRootCleanup.RemoveContainersAsync(DockerPort);
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
        await _postgres.DisposeAsync();
        await DataRootCleanup.DeleteAsync(DataRoot);
    }

    public Task<ProcessResult> RunDockerAsync(params string[] args) =>
        ProcessRunner.RunAsync(DockerCli, ["-H", $"tcp://127.0.0.1:{DockerPort}", .. args], TimeSpan.FromSeconds(60),
            new Dictionary<string, string> { ["DOCKER_CONFIG"] = Path.Combine(DataRoot, "docker-config") });
}

public class DockerApiSpec(RunningFlotilla flotilla) : IClassFixture<RunningFlotilla>
{
    [Fact]
    public async Task Docker_version_shows_the_server_block()
    {
        var result = await flotilla.RunDockerAsync("version");
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("Server: Flotilla", result.Stdout);
        Assert.Contains("1.51 (minimum version 1.24)", result.Stdout);

        var format = await flotilla.RunDockerAsync("version", "--format", "{{.Server.APIVersion}} {{.Server.Os}}");
        Assert.Equal("1.51 linux", format.Stdout.Trim());
    }

    [Fact]
    public async Task Docker_info_reports_figures_from_the_projections()
    {
        // The node registers itself just after the member is up.
        Assert.True(await Eventually.TrueAsync(async () =>
        {
            var nodes = JsonDocument.Parse(await flotilla.Native.GetStringAsync("api/nodes")).RootElement;
            return nodes.GetArrayLength() == 1;
        }, TimeSpan.FromSeconds(15)));

        var result = await flotilla.RunDockerAsync("info");
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("Containers: 0", result.Stdout);
        Assert.Contains("Images: 0", result.Stdout);
        Assert.Contains("Storage Driver: overlay2", result.Stdout);
        Assert.Contains($"CPUs: {Environment.ProcessorCount}", result.Stdout);

        var nodesLine = await flotilla.RunDockerAsync("info", "--format", "{{json .Labels}}");
        Assert.Contains("flotilla.node.gw-node=ready", nodesLine.Stdout);
    }

    [Theory]
    [InlineData("HEAD")]
    [InlineData("GET")]
    public async Task Ping_announces_the_api_version(string method)
    {
        using var response = await flotilla.Docker.SendAsync(new HttpRequestMessage(new HttpMethod(method), "_ping"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("1.51", response.Headers.GetValues("Api-Version").Single());
        Assert.Equal("linux", response.Headers.GetValues("Ostype").Single());
        Assert.Equal("1", response.Headers.GetValues("Builder-Version").Single());
        if (method == "GET") Assert.Equal("OK", await response.Content.ReadAsStringAsync());
    }

    [Theory]
    [InlineData("v1.24/version")]
    [InlineData("v1.41/version")]
    [InlineData("v1.51/version")]
    [InlineData("version")]
    public async Task Versioned_and_unversioned_paths_are_accepted(string path)
    {
        using var response = await flotilla.Docker.GetAsync(path);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("1.51", body.GetProperty("ApiVersion").GetString());
        Assert.Equal("1.24", body.GetProperty("MinAPIVersion").GetString());
        Assert.Equal("Engine", body.GetProperty("Components")[0].GetProperty("Name").GetString());
    }

    [Theory]
    [InlineData("v1.52/info", HttpStatusCode.BadRequest, "client version 1.52 is too new. Maximum supported API version is 1.51")]
    [InlineData("v1.23/info", HttpStatusCode.BadRequest, "client version 1.23 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version")]
    [InlineData("v1.51/no/such/route", HttpStatusCode.NotFound, "page not found")]
    [InlineData("no-such-route", HttpStatusCode.NotFound, "page not found")]
    public async Task Errors_use_dockers_shape_and_exact_content_type(string path, HttpStatusCode status, string message)
    {
        using var response = await flotilla.Docker.GetAsync(path);
        Assert.Equal(status, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.GetValues("Content-Type").Single());
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(message, body.GetProperty("message").GetString());
    }

    [Fact]
    public async Task The_docker_cli_prints_the_daemons_error_message()
    {
        // DOCKER_API_VERSION skips negotiation: a too-new version is refused with Docker's message.
        var result = await ProcessRunner.RunAsync(RunningFlotilla.DockerCli, ["-H", $"tcp://127.0.0.1:{flotilla.DockerPort}", "info"],
            TimeSpan.FromSeconds(30), new Dictionary<string, string> { ["DOCKER_API_VERSION"] = "1.99" });
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("Error response from daemon: client version 1.99 is too new", result.Stdout + result.Stderr);
    }

    [Fact]
    public async Task Native_api_lists_the_node_with_its_facts()
    {
        Assert.True(await Eventually.TrueAsync(async () =>
            JsonDocument.Parse(await flotilla.Native.GetStringAsync("api/nodes")).RootElement.GetArrayLength() == 1,
            TimeSpan.FromSeconds(15)));
        var node = JsonDocument.Parse(await flotilla.Native.GetStringAsync("api/nodes")).RootElement[0];
        Assert.Equal("gw-node", node.GetProperty("name").GetString());
        Assert.Equal("ready", node.GetProperty("status").GetString());
        Assert.Equal(Environment.ProcessorCount, node.GetProperty("cpus").GetInt32());
        Assert.True(node.GetProperty("memoryBytes").GetInt64() > 0);
        Assert.False(string.IsNullOrEmpty(node.GetProperty("kernel").GetString()));
    }

    [Fact]
    public async Task Each_request_echoes_the_clients_request_id_but_gets_flotillas_correlation_id()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "_ping");
        request.Headers.Add("X-Request-Id", "my-trace-1");
        using var response = await flotilla.Docker.SendAsync(request);
        Assert.Equal("my-trace-1", response.Headers.GetValues("X-Request-Id").Single());
        Assert.Matches("^[0-9a-f]{32}$", response.Headers.GetValues("X-Flotilla-Correlation-Id").Single());
    }
}

/// <summary><c>flotilla nodes</c> against the running native API, as a user runs it.</summary>
public class NodesCliSpec(RunningFlotilla flotilla) : IClassFixture<RunningFlotilla>
{
    [Fact]
    public async Task Flotilla_nodes_prints_the_node_as_a_table_and_as_json()
    {
        Assert.True(await Eventually.TrueAsync(async () =>
            JsonDocument.Parse(await flotilla.Native.GetStringAsync("api/nodes")).RootElement.GetArrayLength() == 1, TimeSpan.FromSeconds(15)));
        var cli = typeof(Flotilla.Cli.Commands.NodesCommand).Assembly.Location;
        var table = await ProcessRunner.RunAsync("dotnet", [cli, "nodes", "--http", $"127.0.0.1:{flotilla.HttpPort}"], env: flotilla.CliEnvironment);
        Assert.True(table.ExitCode == 0, table.ToString());
        Assert.Contains("gw-node", table.Stdout);
        Assert.Contains("ready", table.Stdout);

        var json = await ProcessRunner.RunAsync("dotnet", [cli, "nodes", "--json"],
            env: new Dictionary<string, string>(flotilla.CliEnvironment) { ["FLOTILLA_HTTP"] = $"127.0.0.1:{flotilla.HttpPort}" });
        Assert.Equal("gw-node", JsonDocument.Parse(json.Stdout).RootElement[0].GetProperty("name").GetString());

        var down = await ProcessRunner.RunAsync("dotnet", [cli, "nodes", "--http", $"127.0.0.1:{FreePort.Next()}"]);
        Assert.Equal(1, down.ExitCode);
        Assert.Contains("Is `flotilla up` running?", down.Stderr);
    }
}
