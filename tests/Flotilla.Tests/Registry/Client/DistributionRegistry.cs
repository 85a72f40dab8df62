using Flotilla.Tests.Support;
using Xunit;

namespace Flotilla.Tests.Registry.Client;

/// <summary>
/// Debian's <c>docker-registry</c> (CNCF distribution 2.8) on a free loopback port with its storage in a temp
/// directory: an independent V2 registry to pull from and push to.
/// </summary>
public class DistributionRegistry : IAsyncLifetime
{
    private DistributionProcess? _registry;

    /// <summary><c>127.0.0.1:&lt;port&gt;</c>, the registry part of references.</summary>
    public string Address => _registry!.Address;

    public HttpClient Http { get; } = new() { Timeout = TimeSpan.FromSeconds(30) };

    /// <summary>htpasswd lines (bcrypt) to require basic auth; null for an open registry.</summary>
    protected virtual string? Htpasswd => null;

    public async Task InitializeAsync()
    {
        _registry = await DistributionProcess.StartAsync(Htpasswd);
        Http.BaseAddress = new Uri($"http://{Address}/");
    }

    public async Task DisposeAsync()
    {
        Http.Dispose();
        if (_registry is not null) await _registry.DisposeAsync();
    }
}

/// <summary>The same registry requiring basic auth: user <c>tester</c>, password <c>s3cret</c> (bcrypt cost 4, so checks stay fast).</summary>
public sealed class DistributionRegistryWithBasicAuth : DistributionRegistry
{
    public const string User = "tester";
    public const string Password = "s3cret";

    protected override string? Htpasswd => "tester:$2b$04$/C6HjmVGIpVj8u9cvLkYDe2inDXI7k1y5Rg7wxVPxE7Pc1ibJRtVK\n";
}
