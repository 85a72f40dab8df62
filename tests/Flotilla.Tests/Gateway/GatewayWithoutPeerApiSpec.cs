using System.Net;
using System.Text.Json;
using Flotilla.Cli.Hosting;
using Flotilla.Cluster.Hosting;
using Flotilla.Cluster.Security;
using Flotilla.NodeRuntime.Host;
using Flotilla.Tests.Infrastructure;
using Flotilla.Tests.Support;
using Xunit;

namespace Flotilla.Tests.Gateway;

/// <summary>
/// Issue 15 item 2: a gateway started with <c>--api none</c> has no address a node could fetch image content from (its
/// Docker API is its clients', here on loopback), so it refuses import, load and pull instead of keeping images no node
/// can run. It needs no cluster to say so: nothing is read or stored first.
/// </summary>
public sealed class GatewayWithoutPeerApiSpec : IAsyncLifetime
{
    private readonly PostgresFixture _postgres = new();
    private readonly string _root = Path.Combine(Path.GetTempPath(), "flotilla-nopeer-" + Guid.NewGuid().ToString("N")[..8]);
    private readonly int _dockerPort = FreePort.Next();
    private Microsoft.AspNetCore.Builder.WebApplication? _gateway;

    public async Task InitializeAsync()
    {
        await _postgres.InitializeAsync();
        var connectionString = await _postgres.NewDatabaseAsync("nopeer");
        using var ca = ClusterCa.Create();
        _gateway = FlotillaProcess.Build(new ProcessSettings
        {
            NodeName = "gw-nopeer",
            Roles = [FlotillaClusterOptions.GatewayRole],
            DataRoot = _root,
            DockerApi = new IPEndPoint(IPAddress.Loopback, _dockerPort),
            PeerApi = null,
            BindPort = FreePort.Next(),
            Seeds = [$"127.0.0.1:{FreePort.Next()}"],
            Tls = new ClusterTls(ca.Issue(ClusterRole.Gateway, "gw-nopeer", ["127.0.0.1"]), ca.Certificate),
        }, connectionString, await HostFacts.ProbeAsync(null));
        await _gateway.StartAsync();
    }

    public async Task DisposeAsync()
    {
        if (_gateway is not null)
        {
            await _gateway.StopAsync();
            await _gateway.DisposeAsync();
        }
        await _postgres.DisposeAsync();
        await DataRootCleanup.DeleteAsync(_root);
    }

    [Theory]
    [InlineData("/v1.43/images/create?fromSrc=-&repo=t/bb&tag=1", "docker import")]
    [InlineData("/v1.43/images/load?quiet=1", "docker load")]
    [InlineData("/v1.43/images/create?fromImage=127.0.0.1:5000/t/bb&tag=1", "docker pull")]
    public async Task Import_load_and_pull_are_refused_naming_the_flag(string pathAndQuery, string verb)
    {
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{_dockerPort}") };
        using var body = new ByteArrayContent(new byte[1024]);
        body.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/x-tar");
        using var response = await http.PostAsync(pathAndQuery, body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        var message = JsonDocument.Parse(text).RootElement.GetProperty("message").GetString();
        Assert.Equal($"{verb} is not available on this gateway: it was started with --api none, so no node could fetch the image from it; " +
            "start the gateway with --api (its peer API, mutual TLS) or use another gateway", message);
        Assert.False(Directory.Exists(Path.Combine(_root, "content", "blobs", "sha256")) &&
            Directory.EnumerateFiles(Path.Combine(_root, "content", "blobs", "sha256")).Any(), "nothing was stored");
    }
}
