using System.Diagnostics;
using Flotilla.Tests.Support;
using Xunit;

namespace Flotilla.Tests.Registry.Client;

/// <summary>
/// Debian's <c>docker-registry</c> (CNCF distribution 2.8) on a free loopback port with its storage in a temp
/// directory: an independent V2 registry to pull from and push to.
/// </summary>
public class DistributionRegistry : IAsyncLifetime
{
    public const string Binary = "/usr/bin/docker-registry";

    private readonly string _dir = Path.Combine(Path.GetTempPath(), "flotilla-dreg-" + Guid.NewGuid().ToString("N")[..8]);
    private Process? _process;

    public int Port { get; } = FreePort.Next();

    /// <summary><c>127.0.0.1:&lt;port&gt;</c>, the registry part of references.</summary>
    public string Address => $"127.0.0.1:{Port}";

    public HttpClient Http { get; } = new() { Timeout = TimeSpan.FromSeconds(30) };

    /// <summary>htpasswd lines (bcrypt) to require basic auth; null for an open registry.</summary>
    protected virtual string? Htpasswd => null;

    public async Task InitializeAsync()
    {
        if (!File.Exists(Binary)) throw new InvalidOperationException($"{Binary} is missing: apt-get install docker-registry (scripts/install-deps.sh)");
        Directory.CreateDirectory(_dir);
        var auth = "";
        if (Htpasswd is { } lines)
        {
            await File.WriteAllTextAsync(Path.Combine(_dir, "htpasswd"), lines);
            auth = $"auth:\n  htpasswd:\n    realm: flotilla-test\n    path: {_dir}/htpasswd\n";
        }
        var config = Path.Combine(_dir, "config.yml");
        await File.WriteAllTextAsync(config, $"""
            version: 0.1
            log:
              level: error
              accesslog:
                disabled: true
            storage:
              filesystem:
                rootdirectory: {_dir}/data
              delete:
                enabled: true
            http:
              addr: 127.0.0.1:{Port}
            {auth}
            """);
        var psi = new ProcessStartInfo(Binary) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("serve");
        psi.ArgumentList.Add(config);
        _process = Process.Start(psi)!;
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        Http.BaseAddress = new Uri($"http://{Address}/");
        var up = await Eventually.TrueAsync(async () =>
        {
            try
            {
                using var response = await Http.GetAsync("v2/");
                return true;
            }
            catch (HttpRequestException)
            {
                return false;
            }
        }, TimeSpan.FromSeconds(15));
        if (!up) throw new InvalidOperationException($"docker-registry did not answer on {Address} (exited: {_process.HasExited})");
    }

    public Task DisposeAsync()
    {
        Http.Dispose();
        if (_process is { HasExited: false })
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit(5000);
        }
        _process?.Dispose();
        try { Directory.Delete(_dir, recursive: true); }
        catch (IOException) { }
        return Task.CompletedTask;
    }
}

/// <summary>The same registry requiring basic auth: user <c>tester</c>, password <c>s3cret</c> (bcrypt cost 4, so checks stay fast).</summary>
public sealed class DistributionRegistryWithBasicAuth : DistributionRegistry
{
    public const string User = "tester";
    public const string Password = "s3cret";

    protected override string? Htpasswd => "tester:$2b$04$/C6HjmVGIpVj8u9cvLkYDe2inDXI7k1y5Rg7wxVPxE7Pc1ibJRtVK\n";
}
