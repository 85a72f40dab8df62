using Flotilla.Tests.Support;
using Xunit;

namespace Flotilla.Tests.Hosting;

/// <summary>Bad flag values are usage errors: one clear line and exit 1 before anything starts, never a stack trace.</summary>
public class CliUsageErrorSpec
{
    private static readonly string FlotillaDll = Path.Combine(AppContext.BaseDirectory, "flotilla.dll");

    public static IEnumerable<object[]> BadInsecureRegistries() =>
    [
        [new[] { "up", "--insecure-registry", "http://registry.local:5000", "--data", "/nonexistent/flotilla-usage" }, "should not contain '://'"],
        [new[] { "up", "--insecure-registry", "10.0.0.0/99", "--data", "/nonexistent/flotilla-usage" }, "is not a valid CIDR"],
        [new[] { "gateway", "--insecure-registry", "bad host:5000", "--join", "127.0.0.1:1", "--postgres", "Host=127.0.0.1;Port=1" }, "is not a valid host[:port] or CIDR"],
        [new[] { "gateway", "--insecure-registry", "reg:99999", "--join", "127.0.0.1:1", "--postgres", "Host=127.0.0.1;Port=1" }, "is not a valid host[:port] or CIDR"],
    ];

    [Theory]
    [MemberData(nameof(BadInsecureRegistries))]
    public async Task A_bad_insecure_registry_is_a_usage_error(string[] args, string message)
    {
        var result = await ProcessRunner.RunAsync("dotnet", [FlotillaDll, .. args], TimeSpan.FromSeconds(30));
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("--insecure-registry: insecure registry", result.Stderr);
        Assert.Contains(message, result.Stderr);
        Assert.DoesNotContain("   at ", result.Stderr + result.Stdout);
        Assert.False(Directory.Exists("/nonexistent/flotilla-usage"), "nothing started");
    }

    [Theory]
    [InlineData("--registry", "0.0.0.0:5999")]
    [InlineData("--http", "0.0.0.0:8999")]
    public async Task A_token_carrying_listener_beyond_loopback_needs_tls_or_an_explicit_plain(string flag, string address)
    {
        var result = await ProcessRunner.RunAsync("dotnet", [FlotillaDll, "up", flag, address, "--data", "/nonexistent/flotilla-usage"], TimeSpan.FromSeconds(30));
        Assert.Equal(2, result.ExitCode);
        Assert.Contains($"{flag} {address} listens beyond loopback in plain HTTP", result.Stderr);
        Assert.Contains("--tlscert/--tlskey", result.Stderr);
        Assert.DoesNotContain("   at ", result.Stderr + result.Stdout);
        Assert.False(Directory.Exists("/nonexistent/flotilla-usage"), "nothing started");

        var gateway = await ProcessRunner.RunAsync("dotnet", [FlotillaDll, "gateway", flag, address, "--join", "127.0.0.1:1",
            "--postgres", "Host=127.0.0.1;Port=1", "--data", "/nonexistent/flotilla-usage-gw"], TimeSpan.FromSeconds(30));
        Assert.NotEqual(0, gateway.ExitCode);
        Assert.Contains($"{flag} {address} listens beyond loopback in plain HTTP", gateway.Stderr);
    }

    /// <summary>Issue 15 item 2: other hosts dial a process's --api for its image content; its loopback is theirs, not this one's.</summary>
    [Theory]
    [InlineData("gateway", "10.0.0.1:4060", "127.0.0.1:2377", "nodes fetch the images imported, loaded or pulled through this gateway there")]
    [InlineData("node", "10.0.0.11:4053", "127.0.0.1:2376", "peers fetch its image blobs there")]
    public async Task A_loopback_api_beside_a_cluster_address_is_refused(string role, string bind, string api, string why)
    {
        var result = await ProcessRunner.RunAsync("dotnet", [FlotillaDll, role, "--bind", bind, "--api", api, "--join", "10.0.0.11:4053",
            "--postgres", "Host=127.0.0.1;Port=1", "--data", "/nonexistent/flotilla-usage-api"], TimeSpan.FromSeconds(30));
        Assert.Equal(2, result.ExitCode);
        Assert.Contains($"flotilla {role}: --api {api} is a loopback address, which no other host reaches", result.Stderr);
        Assert.Contains(why, result.Stderr);
        Assert.DoesNotContain("   at ", result.Stderr + result.Stdout);
        Assert.False(Directory.Exists("/nonexistent/flotilla-usage-api"), "nothing started");
    }

    [Fact]
    public async Task The_insecure_registries_environment_variable_is_checked_the_same_way()
    {
        var result = await ProcessRunner.RunAsync("dotnet", [FlotillaDll, "up", "--data", "/nonexistent/flotilla-usage"], TimeSpan.FromSeconds(30),
            new Dictionary<string, string> { ["FLOTILLA_INSECURE_REGISTRIES"] = "ok.local:5000,https://bad" });
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("insecure registry https://bad should not contain '://'", result.Stderr);
        Assert.DoesNotContain("   at ", result.Stderr + result.Stdout);
    }
}
