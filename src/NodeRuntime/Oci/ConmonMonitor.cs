using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Flotilla.NodeRuntime.Oci;

/// <summary>How a container's main process ended.</summary>
public sealed record ContainerExit(int ExitCode, bool OomKilled, DateTimeOffset FinishedAt);

public enum ObservedStatus
{
    /// <summary>No monitor, no exit record, no runtime state: nothing to adopt.</summary>
    Missing,
    Created,
    Running,
    Paused,
    Exited,
}

/// <summary>What the node found for a container: the input of reconciliation.</summary>
public sealed record ContainerObservation(string Id, ObservedStatus Status, int? Pid, int? ConmonPid, ContainerExit? Exit);

/// <summary>The container's conmon is gone without recording an exit, and runc says the container does not run.</summary>
public sealed class ContainerExitUnrecordedException(string id)
    : InvalidOperationException($"conmon for {id} is gone and recorded no exit code, and the container does not run");

/// <summary>A non-interactive exec's outcome.</summary>
public sealed record ExecResult(int ExitCode, string Stdout, string Stderr);

public sealed record ConmonOptions
{
    public string ConmonPath { get; init; } = "/usr/bin/conmon";

    /// <summary>The node's data dir; containers live in <c>&lt;DataRoot&gt;/containers/&lt;id&gt;</c>.</summary>
    public required string DataRoot { get; init; }

    /// <summary>How long runc create may take before the start is abandoned.</summary>
    public TimeSpan CreateTimeout { get; init; } = TimeSpan.FromSeconds(30);
}

/// <summary>
/// Runs containers under Debian's conmon 2.1.6, one conmon per container: conmon is the subreaper and parent of
/// the container, owns its stdio (k8s-file log + attach socket) or pty, and records the exit code; it outlives
/// the engine, so a restarted engine re-adopts containers from the files on disk (<see cref="AdoptAsync"/>).
/// Everything here is on the filesystem: two instances over one data dir see the same containers.
/// </summary>
public sealed partial class ConmonMonitor
{
    // pipe() + Process.Start must not interleave: a second child would inherit the first one's pipe ends.
    private static readonly Lock SpawnLock = new();

    private readonly ConmonOptions _options;
    private readonly OciBundleBuilder _bundles;

    public ConmonMonitor(ConmonOptions options, RuncDriver runtime, OciBundleBuilder? bundles = null)
    {
        _options = options;
        Runtime = runtime;
        _bundles = bundles ?? new OciBundleBuilder();
        ContainersRoot = Path.Combine(Path.GetFullPath(options.DataRoot), "containers");
        Host.DataRootPermissions.EnsurePrivate(ContainersRoot);
    }

    public RuncDriver Runtime { get; }
    public string ContainersRoot { get; }

    public ContainerPaths PathsFor(string id)
    {
        return new ContainerPaths(id, Path.Combine(ContainersRoot, Flotilla.Contracts.Containers.ContainerIds.Validate(id)));
    }

    /// <summary>Ids with a directory under the data dir (created, running or exited and not yet removed).</summary>
    public IReadOnlyList<string> KnownContainers() =>
        Directory.EnumerateDirectories(ContainersRoot).Select(Path.GetFileName).OfType<string>().Where(ContainerSpec.IsContainerId).ToList();

    /// <summary>
    /// Writes the bundle and starts conmon, which runs <c>runc create</c>. Returns the container's init pid once it
    /// is <em>created</em> (the user process has not started: attach now, then <see cref="StartAsync"/>). A runc
    /// failure comes back as an <see cref="OciRuntimeException"/> with runc's message and leaves nothing behind.
    /// </summary>
    public async Task<int> CreateAsync(ContainerSpec spec, CancellationToken cancellationToken = default)
    {
        spec.Validate();
        var paths = PathsFor(spec.Id);
        if (Directory.Exists(paths.Root)) throw new InvalidOperationException($"container {spec.Id} already exists on this node");
        try
        {
            Directory.CreateDirectory(paths.Userdata);
            Directory.CreateDirectory(paths.Exits);
            Directory.CreateDirectory(paths.Sockets);
            _bundles.Write(spec, paths.Bundle);
            Host.DataRootPermissions.WritePrivateFileAtomically(paths.SpecFile, JsonSerializer.Serialize(spec));
            return await SpawnConmonAsync(spec, paths, cancellationToken);
        }
        catch
        {
            await RemoveAsync(spec.Id, CancellationToken.None);
            throw;
        }
    }

    /// <summary><c>runc start</c>: the created container runs its process.</summary>
    public Task StartAsync(string id, CancellationToken cancellationToken = default) => Runtime.StartAsync(id, cancellationToken);

    /// <summary>Create, then start.</summary>
    public async Task<int> RunAsync(ContainerSpec spec, CancellationToken cancellationToken = default)
    {
        var pid = await CreateAsync(spec, cancellationToken);
        await StartAsync(spec.Id, cancellationToken);
        return pid;
    }

    /// <summary>Connects to the live stdio of the container (see <see cref="ContainerAttachment"/>).</summary>
    public Task<ContainerAttachment> AttachAsync(string id, CancellationToken cancellationToken = default) =>
        ContainerAttachment.ConnectAsync(PathsFor(id).AttachSocket, cancellationToken);

    /// <summary>Resizes the container's terminal (conmon's ctl FIFO, message type 1).</summary>
    public async Task ResizeAsync(string id, ushort rows, ushort columns, CancellationToken cancellationToken = default) =>
        await WriteCtlAsync(id, $"1 {rows} {columns}\n", cancellationToken);

    /// <summary>Makes conmon reopen its log file (after the engine renamed it for rotation).</summary>
    public async Task ReopenLogAsync(string id, CancellationToken cancellationToken = default) =>
        await WriteCtlAsync(id, "2 0 0\n", cancellationToken);

    /// <summary>The recorded exit, or null while the container has not exited.</summary>
    public ContainerExit? ReadExit(string id)
    {
        var paths = PathsFor(id);
        string text;
        try
        {
            text = File.ReadAllText(paths.ExitFile).Trim();
        }
        catch (FileNotFoundException)
        {
            return null;
        }
        catch (DirectoryNotFoundException)
        {
            return null;
        }
        if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var code)) return null;
        var oom = File.Exists(paths.OomFile) || CgroupV1OomKilled(id);
        return new ContainerExit(code, oom, new DateTimeOffset(File.GetLastWriteTimeUtc(paths.ExitFile), TimeSpan.Zero));
    }

    /// <summary>How often an exit is looked for when conmon cannot be watched (see <see cref="WaitForExitAsync"/>).</summary>
    internal static TimeSpan UnwatchedPollInterval { get; } = TimeSpan.FromSeconds(1);

    /// <summary>How often runc is asked about a container whose conmon is gone without recording an exit.</summary>
    internal static TimeSpan UnmonitoredPollInterval { get; } = TimeSpan.FromSeconds(2);

    /// <summary>Waits for conmons to exit; replaced in tests by one that cannot.</summary>
    internal ProcessExitWatch Exits { get; init; } = ProcessExitWatch.Shared;

    /// <summary>
    /// Waits for the container's exit as conmon records it. conmon writes the exit file as the last thing before it
    /// exits, so this waits for conmon's exit (a pidfd in the engine's one epoll loop, <see cref="ProcessExitWatch"/>)
    /// and then reads the file. A wait that cannot be set up is "unknown", never an exit: it polls instead. Throws
    /// <see cref="ContainerExitUnrecordedException"/> only when conmon is gone without recording an exit and runc says
    /// the container does not run either.
    /// </summary>
    public async Task<ContainerExit> WaitForExitAsync(string id, CancellationToken cancellationToken = default)
    {
        var paths = PathsFor(id);
        var goneChecks = 0;
        while (true)
        {
            if (ReadExit(id) is { } exit) return exit;
            if (ConmonPid(paths) is { } conmon)
            {
                goneChecks = 0;
                if (!Exits.TryWatch(conmon, out var waiter))
                {
                    await Task.Delay(UnwatchedPollInterval, cancellationToken);
                    continue;
                }
                using (waiter)
                {
                    // The pidfd holds the process it was opened on: if that is still this container's conmon, its end is ours.
                    if (!IsLiveConmonFor(conmon, id)) continue;
                    try
                    {
                        await waiter.Ended.WaitAsync(cancellationToken);
                    }
                    catch (ProcessExitWatchException)
                    {
                        await Task.Delay(UnwatchedPollInterval, cancellationToken);
                    }
                }
                continue;
            }
            // No live conmon. It writes the exit file just before it exits: look once more after a moment.
            if (++goneChecks <= 2)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(50), cancellationToken);
                continue;
            }
            // conmon is gone (killed) and recorded nothing. The process may still run without its monitor: that is
            // not an exit; only once runc says it does not run is the run over.
            var state = await Runtime.StateAsync(id, cancellationToken);
            if (state is null || state.Status == "stopped") throw new ContainerExitUnrecordedException(id);
            await Task.Delay(UnmonitoredPollInterval, cancellationToken);
        }
    }

    /// <summary>Sends a signal to the container's init process.</summary>
    public async Task KillAsync(string id, string signal = "KILL", CancellationToken cancellationToken = default)
    {
        try
        {
            await Runtime.KillAsync(id, signal, cancellationToken: cancellationToken);
        }
        catch (OciRuntimeException e) when (IsNotRunning(e))
        {
        }
    }

    /// <summary>
    /// docker stop: <paramref name="signal"/> (TERM), wait up to <paramref name="timeout"/>, then KILL.
    /// Returns the exit (143 when TERM worked, 137 after KILL).
    /// </summary>
    public async Task<ContainerExit> StopAsync(string id, TimeSpan timeout, string signal = "TERM", CancellationToken cancellationToken = default)
    {
        if (ReadExit(id) is { } already) return already;
        await KillAsync(id, signal, cancellationToken);
        using (var grace = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            grace.CancelAfter(timeout);
            try
            {
                return await WaitForExitAsync(id, grace.Token);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
            }
        }
        await KillAsync(id, "KILL", cancellationToken);
        return await WaitForExitAsync(id, cancellationToken);
    }

    public Task PauseAsync(string id, CancellationToken cancellationToken = default) => Runtime.PauseAsync(id, cancellationToken);

    public Task ResumeAsync(string id, CancellationToken cancellationToken = default) => Runtime.ResumeAsync(id, cancellationToken);

    /// <summary>
    /// Runs a process in the container without a terminal through <c>runc exec</c>, streaming its stdio.
    /// Returns its exit code.
    /// </summary>
    public async Task<int> ExecAsync(string id, ExecSpec exec, Stream? stdin, Stream stdout, Stream stderr, CancellationToken cancellationToken = default)
    {
        if (exec.Tty) throw new NotSupportedException("exec with a TTY goes through ExecAttachedAsync (conmon --exec-attach)");
        var paths = PathsFor(id);
        var spec = LoadSpec(paths);
        var process = _bundles.BuildExecProcess(spec, exec);
        var file = Path.Combine(paths.Userdata, $"exec-{Guid.NewGuid():N}.json");
        await Host.DataRootPermissions.WritePrivateFileAsync(file, process.ToJsonString(), cancellationToken);
        try
        {
            return await Runtime.ExecAsync(id, file, stdin, stdout, stderr, cancellationToken);
        }
        finally
        {
            File.Delete(file);
        }
    }

    /// <summary>Exec with stdout and stderr collected as UTF-8 text.</summary>
    public async Task<ExecResult> ExecAsync(string id, ExecSpec exec, CancellationToken cancellationToken = default)
    {
        using var stdout = new MemoryStream();
        using var stderr = new MemoryStream();
        var code = await ExecAsync(id, exec, null, stdout, stderr, cancellationToken);
        return new ExecResult(code, Encoding.UTF8.GetString(stdout.ToArray()), Encoding.UTF8.GetString(stderr.ToArray()));
    }

    /// <summary>
    /// What a (restarted) engine finds for <paramref name="id"/>: a live conmon (checked against pid reuse by its
    /// command line) and runc's state, or an exit file written while nobody was watching.
    /// </summary>
    public async Task<ContainerObservation> AdoptAsync(string id, CancellationToken cancellationToken = default)
    {
        var paths = PathsFor(id);
        if (!Directory.Exists(paths.Root)) return new ContainerObservation(id, ObservedStatus.Missing, null, null, null);
        var conmon = ConmonPid(paths);
        if (ReadExit(id) is { } exit) return new ContainerObservation(id, ObservedStatus.Exited, null, conmon, exit);
        var state = await Runtime.StateAsync(id, cancellationToken);
        if (conmon is null)
        {
            // No monitor and no exit record: the container (if runc still knows it) has nobody collecting its exit.
            if (state is null) return new ContainerObservation(id, ObservedStatus.Missing, null, null, null);
            return state.Status == "stopped"
                ? new ContainerObservation(id, ObservedStatus.Exited, null, null, null)
                : new ContainerObservation(id, ToStatus(state.Status), state.Pid, null, null);
        }
        if (state is null) return new ContainerObservation(id, ObservedStatus.Missing, null, conmon, null);
        if (state.Status == "stopped")
        {
            // Exited a moment ago: conmon is about to write the exit file.
            using var soon = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            soon.CancelAfter(TimeSpan.FromSeconds(5));
            var e = await WaitForExitAsync(id, soon.Token);
            return new ContainerObservation(id, ObservedStatus.Exited, null, conmon, e);
        }
        return new ContainerObservation(id, ToStatus(state.Status), state.Pid, conmon, null);
    }

    /// <summary>
    /// Removes everything: kills the container if it still runs (<c>runc delete --force</c>), waits for its conmon,
    /// deletes the container's directory. Idempotent.
    /// </summary>
    public async Task RemoveAsync(string id, CancellationToken cancellationToken = default)
    {
        var paths = PathsFor(id);
        await Runtime.DeleteAsync(id, force: true, cancellationToken);
        // conmon writes the exit file and then exits: right after an exit it is usually gone within a few ms, so
        // poll fast first (a fixed 20 ms step added ~20 ms to every `docker run --rm`).
        var deadline = DateTime.UtcNow.AddSeconds(5);
        var step = 1;
        while (ConmonPid(paths) is not null && DateTime.UtcNow < deadline)
        {
            await Task.Delay(step, cancellationToken);
            step = Math.Min(step * 2, 20);
        }
        if (ConmonPid(paths) is { } stuck)
        {
            try { Process.GetProcessById(stuck).Kill(); } catch (ArgumentException) { } catch (InvalidOperationException) { }
        }
        if (Directory.Exists(paths.Root)) Directory.Delete(paths.Root, recursive: true);
    }

    /// <summary>The live conmon of this container: pid file, process not a zombie, command line names the id.</summary>
    public int? ConmonPid(string id) => ConmonPid(PathsFor(id));

    private static int? ConmonPid(ContainerPaths paths)
    {
        string text;
        try
        {
            text = File.ReadAllText(paths.ConmonPidFile).Trim();
        }
        catch (IOException)
        {
            return null;
        }
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var pid)) return null;
        return IsLiveConmonFor(pid, paths.Id) ? pid : null;
    }

    private static bool IsLiveConmonFor(int pid, string id)
    {
        try
        {
            // /proc/<pid>/stat: "pid (comm) S …" — comm may contain spaces and parentheses, the state follows the last ')'.
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var state = stat[(stat.LastIndexOf(')') + 2)..].Split(' ', 2)[0];
            if (state is "Z" or "X" or "x") return false;
            var argv = File.ReadAllText($"/proc/{pid}/cmdline").Split('\0');
            for (var i = 0; i + 1 < argv.Length; i++)
                if (argv[i] is "-c" or "--cid" && argv[i + 1] == id) return true;
            return false;
        }
        catch (IOException)
        {
            return false;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }

    private async Task<int> SpawnConmonAsync(ContainerSpec spec, ContainerPaths paths, CancellationToken cancellationToken)
    {
        var psi = new ProcessStartInfo(_options.ConmonPath)
        {
            UseShellExecute = false,
            WorkingDirectory = paths.Userdata,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        string[] args =
        [
            "--api-version", "1", "-c", spec.Id, "-u", spec.Id, "-n", spec.Name.Length > 0 ? spec.Name : spec.Id[..12],
            "-r", Runtime.RuntimePath, "-b", paths.Bundle, "-p", paths.PidFile, "-P", paths.ConmonPidFile,
            "-l", "k8s-file:" + paths.Log, "--exit-dir", paths.Exits, "--socket-dir-path", paths.Sockets,
            "--persist-dir", paths.Userdata, "--runtime-arg", "--root", "--runtime-arg", Runtime.Root,
        ];
        foreach (var a in args) psi.ArgumentList.Add(a);
        // conmon 2.1's k8s-file cap: past it the file is replaced by an empty one (a truncation, not a rotation).
        psi.ArgumentList.Add("--log-size-max");
        psi.ArgumentList.Add((spec.LogSizeMax > 0 ? spec.LogSizeMax : ContainerSpec.DefaultLogSizeMax).ToString(System.Globalization.CultureInfo.InvariantCulture));
        if (spec.OpenStdin) psi.ArgumentList.Add("-i");
        // Conmon closes stdin when an attached client goes, unless told otherwise. Docker does that only for StdinOnce
        // non-TTY containers (`echo x | docker run -i … cat` must see EOF); a TTY container's shell must survive a
        // detach (ctrl-p ctrl-q) and take input again on the next attach.
        if (spec.OpenStdin && (spec.Tty || !spec.StdinOnce)) psi.ArgumentList.Add("--leave-stdin-open");
        if (spec.Tty) psi.ArgumentList.Add("-t");

        int syncRead = -1, syncWrite = -1, startRead = -1, startWrite = -1;
        Process conmon;
        try
        {
            lock (SpawnLock)
            {
                (syncRead, syncWrite) = Native.Pipe();
                (startRead, startWrite) = Native.Pipe();
                Native.SetInheritable(syncWrite, true);
                Native.SetInheritable(startRead, true);
                Native.MarkCloseOnExec(syncWrite, startRead);
                psi.Environment["_OCI_SYNCPIPE"] = syncWrite.ToString(CultureInfo.InvariantCulture);
                psi.Environment["_OCI_STARTPIPE"] = startRead.ToString(CultureInfo.InvariantCulture);
                try
                {
                    conmon = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {_options.ConmonPath}");
                }
                finally
                {
                    Native.Close(syncWrite);
                    Native.Close(startRead);
                    syncWrite = startRead = -1;
                }
            }
            using (conmon)
            {
                var conmonOut = conmon.StandardOutput.ReadToEndAsync(CancellationToken.None);
                var conmonErr = conmon.StandardError.ReadToEndAsync(CancellationToken.None);
                Native.WriteAll(startWrite, "0"u8);
                Native.Close(startWrite);
                startWrite = -1;

                var fd = syncRead;
                var message = Task.Run(() => ReadSyncMessage(fd), CancellationToken.None);
                try
                {
                    var (pid, error) = await message.WaitAsync(_options.CreateTimeout, cancellationToken);
                    if (pid <= 0)
                    {
                        // conmon relays runc's stderr: a logrus line around the actual error.
                        var detail = RuncDriver.ErrorMessage(error ?? await conmonErr.WaitAsync(TimeSpan.FromSeconds(2), CancellationToken.None));
                        throw new OciRuntimeException($"{Runtime.Name} create", 1, detail.Length > 0 ? detail : "conmon reported no container pid");
                    }
                    return pid;
                }
                catch (Exception e) when (e is TimeoutException or OperationCanceledException)
                {
                    if (ConmonPid(paths) is { } stuck) { try { Process.GetProcessById(stuck).Kill(); } catch (ArgumentException) { } }
                    throw;
                }
                finally
                {
                    // The launcher exits once it has forked the monitor; reap it.
                    await conmon.WaitForExitAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None)
                        .ContinueWith(_ => { }, TaskScheduler.Default);
                    _ = conmonOut;
                }
            }
        }
        finally
        {
            Native.Close(syncWrite);
            Native.Close(startRead);
            Native.Close(startWrite);
            Native.Close(syncRead);
        }
    }

    /// <summary>
    /// Reads one <c>{"data": N, "message": "…"}</c> object from conmon's sync pipe, and not a byte more: conmon may have
    /// written the next message (an exec's exit right after its pid) before this read, and it belongs to the next reader.
    /// </summary>
    internal static (int Pid, string? Error) ReadSyncMessage(int fd)
    {
        var one = new byte[1];
        var received = new MemoryStream();
        while (true)
        {
            var n = Native.Read(fd, one);
            if (n == 0) break;
            received.WriteByte(one[0]);
            // A message ends with its closing brace (a brace inside the message string fails to parse and reading goes on).
            if (one[0] == (byte)'}' && TryParse(received.ToArray(), out var result)) return result;
        }
        return TryParse(received.ToArray(), out var last) ? last : (-1, null);

        static bool TryParse(byte[] bytes, out (int, string?) result)
        {
            result = default;
            try
            {
                var reader = new Utf8JsonReader(bytes);
                using var doc = JsonDocument.ParseValue(ref reader);
                var data = doc.RootElement.TryGetProperty("data", out var d) ? d.GetInt32() : -1;
                var msg = doc.RootElement.TryGetProperty("message", out var m) ? m.GetString() : null;
                result = (data, msg);
                return true;
            }
            catch (JsonException)
            {
                return false;
            }
        }
    }

    private async Task WriteCtlAsync(string id, string message, CancellationToken cancellationToken)
    {
        var ctl = PathsFor(id).Ctl;
        if (!File.Exists(ctl)) throw new InvalidOperationException($"container {id} has no control FIFO (is its conmon running?)");
        // conmon keeps the FIFO open for reading while it runs, so this open does not block.
        await using var stream = new FileStream(ctl, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1, FileOptions.None);
        await stream.WriteAsync(Encoding.ASCII.GetBytes(message), cancellationToken);
    }

    private static ContainerSpec LoadSpec(ContainerPaths paths) =>
        JsonSerializer.Deserialize<ContainerSpec>(File.ReadAllText(paths.SpecFile))
        ?? throw new InvalidOperationException($"container {paths.Id}: unreadable {paths.SpecFile}");

    private static bool CgroupV1OomKilled(string id)
    {
        // Present until runc delete; "oom_kill N" counts kills in this cgroup.
        var file = $"/sys/fs/cgroup/memory/flotilla/{id}/memory.oom_control";
        try
        {
            foreach (var line in File.ReadLines(file))
                if (line.StartsWith("oom_kill ", StringComparison.Ordinal) && line[9..].Trim() != "0") return true;
        }
        catch (IOException)
        {
        }
        return false;
    }

    private static bool IsNotRunning(OciRuntimeException e) =>
        e.RuntimeMessage.Contains("not running", StringComparison.OrdinalIgnoreCase)
        || e.RuntimeMessage.Contains("process already finished", StringComparison.OrdinalIgnoreCase)
        || e.RuntimeMessage.Contains("container not running", StringComparison.OrdinalIgnoreCase);

    private static ObservedStatus ToStatus(string status) => status switch
    {
        "created" or "creating" => ObservedStatus.Created,
        "running" => ObservedStatus.Running,
        "paused" => ObservedStatus.Paused,
        "stopped" => ObservedStatus.Exited,
        _ => ObservedStatus.Missing,
    };
}
