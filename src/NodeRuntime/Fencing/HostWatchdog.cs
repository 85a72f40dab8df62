using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Flotilla.NodeRuntime.Fencing;

/// <summary>Where a host's watchdog keeps its socket, lock, log and fence records: <c>&lt;data&gt;/watchdog</c> (0700).</summary>
public sealed record WatchdogPaths(string Directory)
{
    public static WatchdogPaths Of(string dataRoot) => new(Path.Combine(Path.GetFullPath(dataRoot), "watchdog"));

    public string Socket => Path.Combine(Directory, "watchdog.sock");
    public string Lock => Path.Combine(Directory, "watchdog.lock");
    public string Log => Path.Combine(Directory, "watchdog.log");

    /// <summary>One JSON line per fence (<see cref="FenceRecord"/>), until the engine has recorded them as events.</summary>
    public string Fences => Path.Combine(Directory, "fenced.jsonl");
}

/// <summary>The watchdog killed the host's containers: the lease of <paramref name="Epoch"/> was not confirmed by <paramref name="Deadline"/>.</summary>
public sealed record FenceRecord(long Epoch, DateTimeOffset At, IReadOnlyList<string> ContainerIds, string Reason);

/// <summary>
/// <c>flotilla watchdog</c>: a small process per host that outlives the engine. The engine confirms its lease after every
/// renewal with a deadline on the monotonic clock (send time of the renewal + ttl − margin); when the deadline passes
/// without a newer confirmation — the engine crashed, hangs, is cut off from the database, or the host was paused —
/// the watchdog kills every container of the host (<see cref="CgroupFence"/>) and keeps killing whatever appears until
/// a confirmation comes again. So a host whose lease may expire has stopped its containers before it does, and the
/// scheduler, which moves containers only after expiry, never starts one twice. An engine restart within the deadline
/// confirms again and keeps everything.
/// </summary>
public sealed class HostWatchdog(WatchdogPaths paths, CgroupFence fence, Action<string> log)
{
    private static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(20);
    private static readonly TimeSpan KillAgainEvery = TimeSpan.FromMilliseconds(200);

    private readonly Lock _lock = new();
    private long _epoch;
    private long _deadline;
    private bool _armed;
    private bool _released;

    /// <summary>Serves until released or cancelled; returns 0, or 1 when another watchdog already serves this data dir.</summary>
    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        Host.DataRootPermissions.EnsurePrivate(paths.Directory);
        FileStream held;
        try
        {
            // FileShare.None is an exclusive flock on Linux: one watchdog per data dir.
            held = new FileStream(paths.Lock, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException)
        {
            log("another watchdog serves " + paths.Directory);
            return 1;
        }
        await using var _ = held;
        File.Delete(paths.Socket);
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(paths.Socket));
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(paths.Socket, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        listener.Listen(8);
        log($"watchdog {Environment.ProcessId} for cgroup {fence.CgroupParent} on {paths.Socket}");

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var accepting = AcceptAsync(listener, stop);
        var lastKill = 0L;
        var fencedThisLapse = false;
        while (!stop.IsCancellationRequested)
        {
            bool lapsed;
            long epoch;
            lock (_lock)
            {
                if (_released) break;
                lapsed = _armed && Stopwatch.GetTimestamp() >= _deadline;
                epoch = _epoch;
            }
            if (!lapsed) fencedThisLapse = false;
            else if (!fencedThisLapse || Stopwatch.GetElapsedTime(lastKill) >= KillAgainEvery)
            {
                var killed = fence.KillAll();
                lastKill = Stopwatch.GetTimestamp();
                if (killed.Count > 0)
                {
                    var reason = fencedThisLapse ? "started after the fence" : "the lease was not confirmed in time";
                    log($"fenced epoch {epoch}: killed {killed.Count} container(s) ({reason})");
                    Record(new FenceRecord(epoch, DateTimeOffset.UtcNow, killed, reason));
                }
                fencedThisLapse = true;
            }
            try
            {
                await Task.Delay(Tick, stop.Token);
            }
            catch (OperationCanceledException)
            {
            }
        }
        await stop.CancelAsync();
        listener.Close();
        try
        {
            await accepting;
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
        File.Delete(paths.Socket);
        log("watchdog stands down");
        return 0;
    }

    private async Task AcceptAsync(Socket listener, CancellationTokenSource stop)
    {
        while (!stop.IsCancellationRequested)
        {
            var connection = await listener.AcceptAsync(stop.Token);
            _ = ServeAsync(connection, stop);
        }
    }

    private async Task ServeAsync(Socket connection, CancellationTokenSource stop)
    {
        using var _ = connection;
        await using var stream = new NetworkStream(connection, ownsSocket: false);
        using var reader = new StreamReader(stream, Encoding.ASCII);
        await using var writer = new StreamWriter(stream, Encoding.ASCII) { AutoFlush = true, NewLine = "\n" };
        try
        {
            while (await reader.ReadLineAsync(stop.Token) is { } line)
            {
                var reply = Handle(line);
                await writer.WriteLineAsync(reply);
                if (line == "release") await stop.CancelAsync();
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or SocketException)
        {
            // The engine went away: its last confirmation stands until its deadline.
        }
    }

    /// <summary><c>confirm EPOCH DEADLINE</c> (a Stopwatch timestamp) or <c>release</c> (the engine stopped its containers and leaves).</summary>
    private string Handle(string line)
    {
        var parts = line.Split(' ');
        if (parts is ["confirm", var e, var d] && long.TryParse(e, CultureInfo.InvariantCulture, out var epoch)
            && long.TryParse(d, CultureInfo.InvariantCulture, out var deadline))
        {
            lock (_lock)
            {
                if (epoch < _epoch) return "refused: an older epoch";
                _epoch = epoch;
                // Deadlines are absolute: a late (stale) confirmation never shortens, nor lifts a fence by itself.
                if (deadline > _deadline) _deadline = deadline;
                _armed = true;
            }
            return "ok";
        }
        if (parts is ["release"])
        {
            lock (_lock) _released = true;
            return "ok";
        }
        return "refused: unknown request";
    }

    private void Record(FenceRecord record)
    {
        try
        {
            File.AppendAllText(paths.Fences, JsonSerializer.Serialize(record) + "\n");
        }
        catch (IOException ex)
        {
            log("could not record the fence: " + ex.Message);
        }
    }

    /// <summary>The fences recorded so far, removed from the file (the engine records them as events).</summary>
    public static IReadOnlyList<FenceRecord> TakeRecords(WatchdogPaths paths)
    {
        var taken = paths.Fences + ".taking";
        try
        {
            File.Move(paths.Fences, taken, overwrite: true);
        }
        catch (FileNotFoundException)
        {
            return [];
        }
        var records = File.ReadAllLines(taken).Where(l => l.Length > 0)
            .Select(l => JsonSerializer.Deserialize<FenceRecord>(l)).OfType<FenceRecord>().ToList();
        File.Delete(taken);
        return records;
    }
}
