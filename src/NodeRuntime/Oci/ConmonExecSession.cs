using System.Diagnostics;
using System.Globalization;

namespace Flotilla.NodeRuntime.Oci;

/// <summary>
/// An interactive exec (docker exec -i/-t) run by its own conmon (<c>--exec --exec-attach</c>): stdio through an
/// attach socket like a container's, a pty with <c>-t</c>, the exit code from conmon.
/// </summary>
public sealed class ConmonExecSession : IAsyncDisposable
{
    private readonly string _dir;
    private readonly Task<int> _exit;

    internal ConmonExecSession(string sessionId, string dir, int pid, ContainerAttachment attachment, Task<int> exit)
    {
        SessionId = sessionId;
        _dir = dir;
        Pid = pid;
        Attachment = attachment;
        _exit = exit;
    }

    public string SessionId { get; }
    public int Pid { get; }
    public ContainerAttachment Attachment { get; }

    /// <summary>The exec'd process's exit code.</summary>
    public Task<int> WaitForExitAsync(CancellationToken cancellationToken = default) => _exit.WaitAsync(cancellationToken);

    /// <summary>Resizes the exec's pty (its conmon's ctl FIFO lives in the session dir).</summary>
    public async Task ResizeAsync(ushort rows, ushort columns, CancellationToken cancellationToken = default)
    {
        var ctl = Path.Combine(_dir, "ctl");
        await using var stream = new FileStream(ctl, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1);
        await stream.WriteAsync(System.Text.Encoding.ASCII.GetBytes($"1 {rows} {columns}\n"), cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        await Attachment.DisposeAsync();
        try { await _exit.WaitAsync(TimeSpan.FromSeconds(5)); } catch (Exception) { /* reported through WaitForExitAsync */ }
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}

public sealed partial class ConmonMonitor
{
    /// <summary>
    /// Starts an interactive exec through conmon: conmon signals on the attach pipe once its socket is ready, the
    /// engine connects, then releases the start pipe; the sync pipe carries the pid and, at the end, the exit code.
    /// </summary>
    public async Task<ConmonExecSession> ExecAttachedAsync(string id, ExecSpec exec, bool stdin, CancellationToken cancellationToken = default)
    {
        var paths = PathsFor(id);
        var spec = LoadSpec(paths);
        var session = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(6));
        var dir = Path.Combine(paths.Root, "exec", session);
        Directory.CreateDirectory(Path.Combine(dir, "exits"));
        Directory.CreateDirectory(Path.Combine(dir, "sock"));
        var processFile = Path.Combine(dir, "process.json");
        await Host.DataRootPermissions.WritePrivateFileAsync(processFile, _bundles.BuildExecProcess(spec, exec).ToJsonString(), cancellationToken);

        var psi = new ProcessStartInfo(_options.ConmonPath) { UseShellExecute = false, WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
        string[] args =
        [
            "--api-version", "1", "-c", id, "-u", session, "-n", spec.Name.Length > 0 ? spec.Name : id[..12],
            "-r", Runtime.RuntimePath, "-b", dir, "-p", Path.Combine(dir, "pidfile"), "-P", Path.Combine(dir, "conmon.pid"),
            "-l", "k8s-file:" + Path.Combine(dir, "exec.log"), "--exit-dir", Path.Combine(dir, "exits"),
            "--socket-dir-path", Path.Combine(dir, "sock"), "--persist-dir", dir,
            "--runtime-arg", "--root", "--runtime-arg", Runtime.Root,
            "--exec", "--exec-process-spec", processFile, "--exec-attach",
        ];
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (exec.Tty) psi.ArgumentList.Add("-t");
        if (stdin) psi.ArgumentList.Add("-i");

        int syncRead = -1, syncWrite = -1, startRead = -1, startWrite = -1, attachRead = -1, attachWrite = -1;
        var ownsSync = true;
        try
        {
            Process conmon;
            lock (SpawnLock)
            {
                (syncRead, syncWrite) = Native.Pipe();
                (startRead, startWrite) = Native.Pipe();
                (attachRead, attachWrite) = Native.Pipe();
                Native.SetInheritable(syncWrite, true);
                Native.SetInheritable(startRead, true);
                Native.MarkCloseOnExec(syncWrite, startRead, attachWrite);
                Native.SetInheritable(attachWrite, true);
                psi.Environment["_OCI_SYNCPIPE"] = syncWrite.ToString(CultureInfo.InvariantCulture);
                psi.Environment["_OCI_STARTPIPE"] = startRead.ToString(CultureInfo.InvariantCulture);
                psi.Environment["_OCI_ATTACHPIPE"] = attachWrite.ToString(CultureInfo.InvariantCulture);
                try
                {
                    conmon = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {_options.ConmonPath}");
                }
                finally
                {
                    Native.Close(syncWrite);
                    Native.Close(startRead);
                    Native.Close(attachWrite);
                    syncWrite = startRead = attachWrite = -1;
                }
            }
            using (conmon)
            {
                _ = conmon.StandardOutput.ReadToEndAsync(CancellationToken.None);
                _ = conmon.StandardError.ReadToEndAsync(CancellationToken.None);
                Native.WriteAll(startWrite, "0"u8); // 1: go (podman moves conmon into a cgroup first)

                var attachFd = attachRead;
                var (ready, readyError) = await Task.Run(() => ReadSyncMessage(attachFd), CancellationToken.None)
                    .WaitAsync(_options.CreateTimeout, cancellationToken);
                if (ready < 0) throw new OciRuntimeException($"{Runtime.Name} exec", 1, readyError ?? "conmon did not set up the exec attach socket");
                var attachment = await ContainerAttachment.ConnectAsync(Path.Combine(dir, "sock", session, "attach"), cancellationToken);
                Native.WriteAll(startWrite, "0"u8); // 2: attached, run the process
                Native.Close(startWrite);
                startWrite = -1;

                var syncFd = syncRead;
                var (pid, error) = await Task.Run(() => ReadSyncMessage(syncFd), CancellationToken.None).WaitAsync(_options.CreateTimeout, cancellationToken);
                if (pid <= 0)
                {
                    await attachment.DisposeAsync();
                    throw new OciRuntimeException($"{Runtime.Name} exec", 1, RuncDriver.ErrorMessage(error ?? "conmon reported no exec pid"));
                }
                ownsSync = false;
                var exit = Task.Run(() =>
                {
                    try
                    {
                        var (code, _) = ReadSyncMessage(syncFd);
                        return code;
                    }
                    finally
                    {
                        Native.Close(syncFd);
                    }
                }, CancellationToken.None);
                await conmon.WaitForExitAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None);
                return new ConmonExecSession(session, dir, pid, attachment, exit);
            }
        }
        catch
        {
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
            throw;
        }
        finally
        {
            Native.Close(startWrite);
            Native.Close(attachRead);
            if (ownsSync) Native.Close(syncRead);
        }
    }
}
