using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Flotilla.NodeRuntime.Oci;

/// <summary>An OCI runtime command that failed; <see cref="Message"/> is the runtime's own error text.</summary>
public class OciRuntimeException(string command, int exitCode, string message)
    : Exception($"{command}: {message}")
{
    public string Command { get; } = command;
    public int ExitCode { get; } = exitCode;
    public string RuntimeMessage { get; } = message;
}

/// <summary>The runtime has no container with this id.</summary>
public sealed class OciContainerNotFoundException(string command, int exitCode, string message)
    : OciRuntimeException(command, exitCode, message);

/// <summary><c>runc state</c>: "creating", "created", "running", "paused" or "stopped".</summary>
public sealed record OciState(string Id, string Status, int Pid, string Bundle, DateTimeOffset? Created);

/// <summary>
/// The runc command line (crun shares it: same verbs, flags and state JSON, so one driver serves both; the
/// binary decides). Every state lives under <see cref="Root"/> (<c>--root</c>), so an engine's containers never
/// mix with another runc user's. Calls are async, killed on cancellation, and a failure becomes an
/// <see cref="OciRuntimeException"/> carrying runc's message.
/// </summary>
public sealed partial class RuncDriver
{
    public RuncDriver(string runtimePath, string root)
    {
        RuntimePath = runtimePath;
        Root = Path.GetFullPath(root);
        Host.DataRootPermissions.EnsurePrivate(Root);
    }

    public string RuntimePath { get; }
    public string Root { get; }
    public string Name => Path.GetFileName(RuntimePath);

    /// <summary>The first line of <c>--version</c>, e.g. "runc version 1.1.5+ds1".</summary>
    public async Task<string> VersionAsync(CancellationToken cancellationToken = default)
    {
        var r = await RunAsync(["--version"], cancellationToken, global: false);
        return r.Stdout.Split('\n', 2)[0].Trim();
    }

    /// <summary>An id as a runc argument: never an option, a path or anything but Docker's form.</summary>
    private static string Id(string id) => Flotilla.Contracts.Containers.ContainerIds.Validate(id);

    public Task CreateAsync(string id, string bundle, string? pidFile = null, string? consoleSocket = null, CancellationToken cancellationToken = default)
    {
        var args = new List<string> { "create", "--bundle", bundle };
        if (pidFile is not null) args.AddRange(["--pid-file", pidFile]);
        if (consoleSocket is not null) args.AddRange(["--console-socket", consoleSocket]);
        args.Add(Id(id));
        return RunAsync(args, cancellationToken);
    }

    public Task StartAsync(string id, CancellationToken cancellationToken = default) => RunAsync(["start", Id(id)], cancellationToken);

    /// <summary><c>runc state</c>, or null when the runtime has no such container.</summary>
    public async Task<OciState?> StateAsync(string id, CancellationToken cancellationToken = default)
    {
        try
        {
            var r = await RunAsync(["state", Id(id)], cancellationToken);
            using var doc = JsonDocument.Parse(r.Stdout);
            var e = doc.RootElement;
            DateTimeOffset? created = e.TryGetProperty("created", out var c) && c.ValueKind == JsonValueKind.String ? c.GetDateTimeOffset() : null;
            return new OciState(e.GetProperty("id").GetString()!, e.GetProperty("status").GetString()!,
                e.TryGetProperty("pid", out var pid) ? pid.GetInt32() : 0,
                e.TryGetProperty("bundle", out var b) ? b.GetString() ?? "" : "", created);
        }
        catch (OciContainerNotFoundException)
        {
            return null;
        }
    }

    /// <summary>Sends <paramref name="signal"/> ("TERM", "KILL", "SIGHUP", "9") to the init process (or all with <paramref name="all"/>).</summary>
    public Task KillAsync(string id, string signal = "TERM", bool all = false, CancellationToken cancellationToken = default) =>
        RunAsync(all ? ["kill", "--all", Id(id), signal] : ["kill", Id(id), signal], cancellationToken);

    /// <summary>Removes the container; with <paramref name="force"/> kills it first. A missing container is not an error.</summary>
    public async Task DeleteAsync(string id, bool force = false, CancellationToken cancellationToken = default)
    {
        try
        {
            await RunAsync(force ? ["delete", "--force", Id(id)] : ["delete", Id(id)], cancellationToken);
        }
        catch (OciContainerNotFoundException)
        {
        }
    }

    public Task PauseAsync(string id, CancellationToken cancellationToken = default) => RunAsync(["pause", Id(id)], cancellationToken);

    public Task ResumeAsync(string id, CancellationToken cancellationToken = default) => RunAsync(["resume", Id(id)], cancellationToken);

    /// <summary>Host pids of every process in the container.</summary>
    public async Task<IReadOnlyList<int>> PsAsync(string id, CancellationToken cancellationToken = default)
    {
        var r = await RunAsync(["ps", "--format", "json", Id(id)], cancellationToken);
        return JsonSerializer.Deserialize<int[]>(r.Stdout.Trim() is { Length: > 0 } s && s != "null" ? s : "[]") ?? [];
    }

    /// <summary>
    /// <c>runc run</c> in the foreground (create + start + wait + delete), stdout/stderr captured; returns the
    /// container's exit code. For one-shot containers and measurements.
    /// </summary>
    public async Task<(int ExitCode, string Stdout, string Stderr)> RunForegroundAsync(string id, string bundle, CancellationToken cancellationToken = default)
    {
        var r = await RunAsync(["run", "--bundle", bundle, Id(id)], cancellationToken, check: false);
        return (r.ExitCode, r.Stdout, r.Stderr);
    }

    /// <summary>
    /// <c>runc exec -p process.json</c> without a terminal: runc hands its own stdio to the process, so stdin is
    /// copied from <paramref name="stdin"/> (closed = EOF) and stdout/stderr into the given streams. Returns the
    /// process's exit code. runc's own failures are told apart through its JSON log (<c>--log</c>).
    /// </summary>
    public async Task<int> ExecAsync(string id, string processJsonPath, Stream? stdin, Stream stdout, Stream stderr,
        CancellationToken cancellationToken = default)
    {
        var log = Path.Combine(Root, $"exec-{Guid.NewGuid():N}.log");
        try
        {
            using var p = StartProcess(["--root", Root, "--log", log, "--log-format", "json", "exec", "--process", processJsonPath, Id(id)], redirectStdin: true);
            var copyOut = p.StandardOutput.BaseStream.CopyToAsync(stdout, cancellationToken);
            var copyErr = p.StandardError.BaseStream.CopyToAsync(stderr, cancellationToken);
            var copyIn = Task.Run(async () =>
            {
                try
                {
                    if (stdin is not null) await stdin.CopyToAsync(p.StandardInput.BaseStream, cancellationToken);
                }
                catch (IOException)
                {
                    // the process exited before reading all of stdin
                }
                finally
                {
                    try { p.StandardInput.Close(); } catch (IOException) { }
                }
            }, cancellationToken);
            await WaitOrKillAsync(p, cancellationToken);
            await Task.WhenAll(copyOut, copyErr);
            await Task.WhenAny(copyIn, Task.Delay(1000, cancellationToken));
            var error = ReadJsonLogError(log);
            if (error is not null) throw Failure("exec", p.ExitCode, error);
            return p.ExitCode;
        }
        finally
        {
            File.Delete(log);
        }
    }

    internal sealed record Result(int ExitCode, string Stdout, string Stderr);

    private async Task<Result> RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken, bool global = true, bool check = true)
    {
        using var p = StartProcess(global ? ["--root", Root, .. args] : args, redirectStdin: false);
        var stdout = p.StandardOutput.ReadToEndAsync(cancellationToken);
        var stderr = p.StandardError.ReadToEndAsync(cancellationToken);
        await WaitOrKillAsync(p, cancellationToken);
        var result = new Result(p.ExitCode, await stdout, await stderr);
        if (check && result.ExitCode != 0) throw Failure(args[0], result.ExitCode, ErrorMessage(result.Stderr));
        return result;
    }

    private Process StartProcess(IReadOnlyList<string> args, bool redirectStdin)
    {
        var psi = new ProcessStartInfo(RuntimePath)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {RuntimePath}");
        if (!redirectStdin) p.StandardInput.Close();
        return p;
    }

    private static async Task WaitOrKillAsync(Process p, CancellationToken cancellationToken)
    {
        try
        {
            await p.WaitForExitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            throw;
        }
    }

    private OciRuntimeException Failure(string command, int exitCode, string message)
    {
        var full = $"{Name} {command}";
        return message.Contains("does not exist", StringComparison.Ordinal) || message.Contains("not exist", StringComparison.Ordinal)
            ? new OciContainerNotFoundException(full, exitCode, message)
            : new OciRuntimeException(full, exitCode, message);
    }

    [GeneratedRegex("""level=(error|fatal) msg="((?:[^"\\]|\\.)*)"$""")]
    private static partial Regex LogrusError();

    /// <summary>runc prints a logrus line (<c>level=error msg="…"</c>) and then the bare error; crun a plain line.</summary>
    public static string ErrorMessage(string stderr)
    {
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (var line in lines.Reverse())
        {
            var m = LogrusError().Match(line);
            if (m.Success) return Regex.Unescape(m.Groups[2].Value);
        }
        return lines.Length > 0 ? lines[^1] : "failed without a message";
    }

    private static string? ReadJsonLogError(string path)
    {
        if (!File.Exists(path)) return null;
        var errors = new StringBuilder();
        foreach (var line in File.ReadLines(path))
        {
            try
            {
                using var doc = JsonDocument.Parse(line);
                if (doc.RootElement.TryGetProperty("level", out var level) && level.GetString() is "error" or "fatal")
                    errors.Append(doc.RootElement.GetProperty("msg").GetString()).Append('\n');
            }
            catch (JsonException)
            {
            }
        }
        return errors.Length > 0 ? errors.ToString().TrimEnd() : null;
    }
}
