using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;

namespace Flotilla.Tests.Support;

/// <summary>
/// A real <c>flotilla up</c> process on a temp data directory, a socket under /tmp and free ports; its console kept
/// line by line with the time each line came.
/// </summary>
public sealed class UpProcess : IAsyncDisposable
{
    private static readonly string FlotillaDll = Path.Combine(AppContext.BaseDirectory, "flotilla.dll");
    private readonly Process _process;
    private readonly ConcurrentQueue<(TimeSpan At, string Line)> _lines = new();
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly TaskCompletionSource<TimeSpan> _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public string DataRoot { get; }
    public string Socket { get; }
    public int Pid => _process.Id;

    public int RegistryPort { get; }
    private readonly bool _keepData;

    private UpProcess(string name, IReadOnlyList<string> extraArgs, IReadOnlyDictionary<string, string>? env, string? dataRoot, bool keepData)
    {
        var id = Guid.NewGuid().ToString("N")[..8];
        DataRoot = dataRoot ?? Path.Combine(Path.GetTempPath(), $"flotilla-{name}-{id}");
        _keepData = keepData;
        Socket = Path.Combine(DataRoot, "docker.sock");
        RegistryPort = FreePort.Next();
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { FlotillaDll, "up", "--data", DataRoot, "--docker-socket", Socket, "--registry", $"127.0.0.1:{RegistryPort}",
                     "--http", $"127.0.0.1:{FreePort.Next()}", "--name", name }.Concat(extraArgs))
            psi.ArgumentList.Add(a);
        psi.Environment.Remove("FLOTILLA_LOG_LEVEL");
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        _process = Process.Start(psi)!;
        _process.OutputDataReceived += (_, e) => OnLine(e.Data);
        _process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    /// <param name="dataRoot">An existing data directory (a restart); default a new one.</param>
    /// <param name="keepData">Leave the data directory when disposed (to start again on it).</param>
    public static UpProcess Start(string name, IReadOnlyList<string>? extraArgs = null, IReadOnlyDictionary<string, string>? env = null,
        string? dataRoot = null, bool keepData = false) =>
        new(name, extraArgs ?? [], env, dataRoot, keepData);

    private void OnLine(string? line)
    {
        if (line is null) return;
        _lines.Enqueue((_clock.Elapsed, line));
        // The banner's last line.
        if (line.StartsWith("export DOCKER_HOST", StringComparison.Ordinal) || line.StartsWith("The docker CLI", StringComparison.Ordinal))
            _ready.TrySetResult(_clock.Elapsed);
    }

    /// <summary>When the banner was complete (time since start).</summary>
    public async Task<TimeSpan> WaitReadyAsync(TimeSpan timeout)
    {
        var exited = _process.WaitForExitAsync();
        var first = await Task.WhenAny(_ready.Task, exited, Task.Delay(timeout));
        if (first == _ready.Task) return await _ready.Task;
        throw new InvalidOperationException((first == exited ? $"flotilla up exited ({_process.ExitCode})" : "flotilla up did not become ready") + ":\n" + Console());
    }

    public IReadOnlyList<(TimeSpan At, string Line)> Lines => _lines.ToArray();

    public string Console(TimeSpan? until = null) =>
        string.Join("\n", _lines.Where(l => until is null || l.At <= until).Select(l => $"{l.At.TotalSeconds,7:F2} {l.Line}"));

    public Dictionary<string, string> DockerEnv() => new()
    {
        ["DOCKER_HOST"] = $"unix://{Socket}",
        ["DOCKER_CONFIG"] = Path.Combine(DataRoot, "docker-config"),
    };

    /// <summary>SIGTERM, then the time until the process has exited (null when it had to be killed after the limit).</summary>
    public async Task<TimeSpan?> TerminateAsync(TimeSpan limit)
    {
        if (_process.HasExited) return TimeSpan.Zero;
        var sent = Stopwatch.StartNew();
        Process.Start("kill", ["-TERM", _process.Id.ToString(CultureInfo.InvariantCulture)])!.WaitForExit();
        try
        {
            await _process.WaitForExitAsync().WaitAsync(limit);
            return sent.Elapsed;
        }
        catch (TimeoutException)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
            return null;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited) await TerminateAsync(TimeSpan.FromSeconds(60));
        _process.Dispose();
        if (!_keepData) await DataRootCleanup.DeleteAsync(DataRoot);
    }
}
