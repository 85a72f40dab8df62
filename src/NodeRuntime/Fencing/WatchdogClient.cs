using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace Flotilla.NodeRuntime.Fencing;

/// <summary>
/// The engine's side of <see cref="HostWatchdog"/>: finds the host's watchdog on its socket, starting one detached
/// (its own session, so it outlives the engine) when none answers, and passes on every lease confirmation.
/// </summary>
/// <param name="spawn">The command line of <c>flotilla watchdog --data … --cgroup-parent …</c>.</param>
public sealed class WatchdogClient(WatchdogPaths paths, IReadOnlyList<string> spawn, Action<string> log) : IAsyncDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(15);
    private readonly SemaphoreSlim _gate = new(1, 1);
    private Socket? _socket;
    private StreamReader? _reader;
    private StreamWriter? _writer;

    public WatchdogPaths Paths => paths;

    /// <summary>Confirms the lease of <paramref name="epoch"/> until <paramref name="deadline"/> (a Stopwatch timestamp).</summary>
    public Task ConfirmAsync(long epoch, long deadline, CancellationToken cancellationToken) =>
        SendAsync(string.Create(CultureInfo.InvariantCulture, $"confirm {epoch} {deadline}"), start: true, cancellationToken);

    /// <summary>The engine stopped every container and leaves: the watchdog stands down and exits.</summary>
    public Task ReleaseAsync(CancellationToken cancellationToken) => SendAsync("release", start: false, cancellationToken);

    private async Task SendAsync(string line, bool start, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            for (var attempt = 0; ; attempt++)
            {
                try
                {
                    if (_writer is null && !await ConnectAsync(start, cancellationToken)) return;
                    await _writer!.WriteLineAsync(line.AsMemory(), cancellationToken);
                    var reply = await _reader!.ReadLineAsync(cancellationToken);
                    if (reply != "ok") throw new IOException($"the watchdog answered '{reply}' to '{line}'");
                    return;
                }
                catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException && attempt == 0)
                {
                    // A watchdog that went away (or a stale connection): connect again, once.
                    Disconnect();
                }
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task<bool> ConnectAsync(bool start, CancellationToken cancellationToken)
    {
        if (await TryConnectAsync(cancellationToken)) return true;
        if (!start) return false;
        Spawn();
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < StartTimeout)
        {
            await Task.Delay(50, cancellationToken);
            if (await TryConnectAsync(cancellationToken)) return true;
        }
        throw new IOException($"the watchdog did not answer on {paths.Socket} within {StartTimeout.TotalSeconds:F0} s (log: {paths.Log})");
    }

    private async Task<bool> TryConnectAsync(CancellationToken cancellationToken)
    {
        if (!File.Exists(paths.Socket)) return false;
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(paths.Socket), cancellationToken);
        }
        catch (SocketException)
        {
            socket.Dispose();
            return false;
        }
        _socket = socket;
        var stream = new NetworkStream(socket, ownsSocket: false);
        _reader = new StreamReader(stream, Encoding.ASCII);
        _writer = new StreamWriter(stream, Encoding.ASCII) { AutoFlush = true, NewLine = "\n" };
        return true;
    }

    /// <summary>
    /// <c>setsid -f</c>: a new session, forked, so neither the engine's exit nor a signal to its process group reaches it;
    /// its output goes to the watchdog's log.
    /// </summary>
    private void Spawn()
    {
        Host.DataRootPermissions.EnsurePrivate(paths.Directory);
        var psi = new ProcessStartInfo("setsid") { UseShellExecute = false };
        foreach (var arg in (string[])["-f", "sh", "-c", "exec \"$@\" </dev/null >>\"$0\" 2>&1", paths.Log, .. spawn]) psi.ArgumentList.Add(arg);
        psi.Environment["DOTNET_gcServer"] = "0";
        psi.Environment["DOTNET_GCHeapHardLimit"] = "0x4000000"; // 64 MiB: it holds a deadline and a socket
        using var process = Process.Start(psi) ?? throw new IOException("could not start the watchdog (setsid)");
        process.WaitForExit(5000);
        log($"started the host watchdog ({string.Join(' ', spawn)})");
    }

    private void Disconnect()
    {
        _writer?.Dispose();
        _reader?.Dispose();
        _socket?.Dispose();
        _writer = null;
        _reader = null;
        _socket = null;
    }

    public ValueTask DisposeAsync()
    {
        Disconnect();
        _gate.Dispose();
        return ValueTask.CompletedTask;
    }
}
