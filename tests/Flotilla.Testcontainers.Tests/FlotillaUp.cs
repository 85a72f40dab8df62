using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Xunit;

namespace Flotilla.Testcontainers.Tests;

/// <summary>
/// A real <c>flotilla up</c> (the CLI this checkout built) in a child process: its own data directory, Docker API on a
/// unix socket under it, free loopback ports for the registry and native API; a busybox image imported with the docker
/// CLI (no pulls: there is no internet). Stopped with SIGTERM and its directory removed at the end.
/// </summary>
public sealed class FlotillaUp : IAsyncLifetime
{
    public const string Image = "flt-tc/busybox:1";

    private readonly string _root = Path.Combine(Path.GetTempPath(), "flt-tc-" + Guid.NewGuid().ToString("N")[..8]);
    private Process? _process;
    private readonly System.Text.StringBuilder _output = new();

    public string Socket => Path.Combine(_root, "docker.sock");
    public string DockerEndpoint => "unix://" + Socket;
    public string Root => _root;

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(_root);
        var cli = FindCli();
        var start = new ProcessStartInfo("dotnet")
        {
            ArgumentList =
            {
                cli, "up", "--data", Path.Combine(_root, "data"), "--docker-socket", Socket,
                "--registry", $"127.0.0.1:{FreePort()}", "--http", $"127.0.0.1:{FreePort()}", "--name", "tc",
            },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        _process = Process.Start(start) ?? throw new InvalidOperationException("flotilla up did not start");
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void Line(string? line)
        {
            if (line is null) return;
            lock (_output) _output.AppendLine(line);
            if (line.Contains(" is ready on node ", StringComparison.Ordinal)) ready.TrySetResult();
        }
        _process.OutputDataReceived += (_, e) => Line(e.Data);
        _process.ErrorDataReceived += (_, e) => Line(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        var exited = _process.WaitForExitAsync();
        if (await Task.WhenAny(ready.Task, exited, Task.Delay(TimeSpan.FromSeconds(120))) != ready.Task)
            throw new InvalidOperationException("flotilla up was not ready within 120 s:\n" + Output());

        // The image: a busybox rootfs, imported through the docker CLI.
        var rootfs = Path.Combine(_root, "rootfs");
        Directory.CreateDirectory(Path.Combine(rootfs, "bin"));
        Directory.CreateDirectory(Path.Combine(rootfs, "tmp"));
        File.Copy("/bin/busybox", Path.Combine(rootfs, "bin", "busybox"));
        foreach (var tool in new[] { "sh", "sleep", "cat", "echo", "touch", "test", "ls" })
            File.CreateSymbolicLink(Path.Combine(rootfs, "bin", tool), "busybox");
        await RunAsync("tar", "-C", rootfs, "-cf", Path.Combine(_root, "rootfs.tar"), ".");
        await RunAsync("docker", "-H", DockerEndpoint, "import", Path.Combine(_root, "rootfs.tar"), Image);
    }

    public string Output()
    {
        lock (_output) return _output.ToString();
    }

    public async Task DisposeAsync()
    {
        if (_process is { HasExited: false })
        {
            Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])?.WaitForExit();
            if (!_process.WaitForExit(TimeSpan.FromSeconds(30))) _process.Kill(entireProcessTree: true);
        }
        _process?.Dispose();
        await Task.Yield();
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private static async Task RunAsync(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) start.ArgumentList.Add(a);
        using var p = Process.Start(start)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{file} {string.Join(' ', args)}: exit {p.ExitCode}\n{await stdout}{await stderr}");
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>flotilla.dll of this checkout's Release build (src/Cli/bin/Release/net10.0).</summary>
    private static string FindCli()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Cluster.sln")))
            {
                var dll = Path.Combine(dir.FullName, "src", "Cli", "bin", "Release", "net10.0", "flotilla.dll");
                return File.Exists(dll) ? dll : throw new FileNotFoundException("build the solution in Release first", dll);
            }
        throw new DirectoryNotFoundException("no Cluster.sln above " + AppContext.BaseDirectory);
    }
}
