using System.Diagnostics;

namespace Flotilla.Tests.Support;

/// <summary>
/// Debian's <c>docker-registry</c> (CNCF distribution 2.8.2) as a process: a free loopback port, filesystem storage
/// with deletes enabled in a temp dir, optionally htpasswd basic auth. The reference registry of the conformance
/// checks and the independent registry of the engine's client specs.
/// </summary>
public sealed class DistributionProcess : IAsyncDisposable
{
    public const string Executable = "/usr/bin/docker-registry";

    private readonly string _root = Path.Combine(Path.GetTempPath(), "flotilla-distribution-" + Guid.NewGuid().ToString("N")[..8]);
    private readonly Queue<string> _log = new();
    private Process? _process;

    private DistributionProcess()
    {
    }

    public int Port { get; } = FreePort.Next();

    /// <summary><c>127.0.0.1:&lt;port&gt;</c>, the registry part of references.</summary>
    public string Address => $"127.0.0.1:{Port}";

    /// <summary>Serve HTTPS with this certificate and key (PEM files); with <paramref name="ClientCa"/>, require client certificates of it.</summary>
    public sealed record Tls(string Certificate, string Key, string? ClientCa = null);

    private Tls? _tls;

    /// <param name="htpasswd">htpasswd lines (bcrypt) to require basic auth; null for an open registry.</param>
    /// <param name="tls">HTTPS instead of plain HTTP.</param>
    public static async Task<DistributionProcess> StartAsync(string? htpasswd = null, Tls? tls = null)
    {
        if (!File.Exists(Executable)) throw new InvalidOperationException($"{Executable} is missing: run ./scripts/install-deps.sh");
        var registry = new DistributionProcess { _tls = tls };
        try
        {
            await registry.RunAsync(htpasswd);
            return registry;
        }
        catch
        {
            await registry.DisposeAsync();
            throw;
        }
    }

    private async Task RunAsync(string? htpasswd)
    {
        Directory.CreateDirectory(_root);
        var auth = "";
        if (htpasswd is not null)
        {
            await File.WriteAllTextAsync(Path.Combine(_root, "htpasswd"), htpasswd);
            auth = $"auth:\n  htpasswd:\n    realm: flotilla-test\n    path: {_root}/htpasswd\n";
        }
        var tls = _tls is null ? "" : $"""
              tls:
                certificate: {_tls.Certificate}
                key: {_tls.Key}
            """ + (_tls.ClientCa is null ? "" : $"\n    clientcas:\n      - {_tls.ClientCa}");
        var config = Path.Combine(_root, "config.yml");
        await File.WriteAllTextAsync(config, $"""
            version: 0.1
            log:
              level: warn
              accesslog:
                disabled: true
            storage:
              filesystem:
                rootdirectory: {Path.Combine(_root, "data")}
              delete:
                enabled: true
            http:
              addr: 127.0.0.1:{Port}
              secret: flotilla-tests-only
            {tls}
            {auth}
            """);
        var start = new ProcessStartInfo(Executable)
        {
            ArgumentList = { "serve", config },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        _process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {Executable}");
        _process.OutputDataReceived += (_, e) => Remember(e.Data);
        _process.ErrorDataReceived += (_, e) => Remember(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var up = await Eventually.TrueAsync(async () =>
        {
            try
            {
                if (_tls is not null)
                {
                    // It may require a client certificate this probe does not have: listening is enough.
                    using var tcp = new System.Net.Sockets.TcpClient();
                    await tcp.ConnectAsync(System.Net.IPAddress.Loopback, Port);
                    return true;
                }
                using var response = await http.GetAsync($"http://{Address}/v2/");
                return true;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or System.Net.Sockets.SocketException)
            {
                return false;
            }
        }, TimeSpan.FromSeconds(15));
        if (!up) throw new InvalidOperationException($"{Executable} did not answer GET /v2/ on {Address}:\n{RecentLog}");
    }

    /// <summary>The registry's last 50 log lines, for failure messages.</summary>
    public string RecentLog
    {
        get
        {
            lock (_log) return string.Join('\n', _log);
        }
    }

    private void Remember(string? line)
    {
        if (line is null) return;
        lock (_log)
        {
            _log.Enqueue(line);
            if (_log.Count > 50) _log.Dequeue();
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is not null)
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
            _process.Dispose();
        }
        try
        {
            if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
