using System.IO.Pipelines;
using System.Text.Json;
using Flotilla.Cluster;
using Flotilla.Cluster.Containers;
using Flotilla.Contracts;
using Flotilla.Contracts.Containers;
using Flotilla.Gateway.DockerApi;
using Flotilla.Gateway.Forwarding;
using Flotilla.NodeRuntime.Containers;
using Flotilla.NodeRuntime.Oci;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Flotilla.Gateway.Hijack;

/// <summary>
/// <c>POST /exec/{id}/start</c>: runs an exec instance. Without a TTY through <c>runc exec</c> (stdout/stderr as
/// stdcopy frames, stdin from the client), with a TTY through conmon's exec attach (raw bytes). The exit code is
/// recorded before the stream closes: the CLI inspects the exec as soon as it sees EOF. <c>Detach: true</c> gets a
/// plain 200 and the process runs on without a client.
/// </summary>
public sealed class ExecStartHijackHandler(IServiceProvider services, ExecRegistry execs, ILogger<ExecStartHijackHandler> logger) : IHijackHandler
{
    public bool Matches(string path) => path.StartsWith("/exec/", StringComparison.Ordinal) && path.EndsWith("/start", StringComparison.Ordinal);

    public async Task HandleAsync(HijackedStream stream, string path, CancellationToken cancellationToken)
    {
        var id = Uri.UnescapeDataString(path["/exec/".Length..^"/start".Length]);
        var detach = false;
        if (!stream.Body.IsEmpty)
        {
            try
            {
                using var body = JsonDocument.Parse(stream.Body);
                if (body.RootElement.ValueKind == JsonValueKind.Object && body.RootElement.TryGetProperty("Detach", out var d))
                    detach = d.ValueKind == JsonValueKind.True;
            }
            catch (JsonException e)
            {
                await stream.RejectAsync(400, $"invalid JSON: {e.Message}");
                return;
            }
        }

        var exec = execs.Find(id);
        if (exec is null)
        {
            // An exec this gateway created on another node runs there: relay the hijack.
            var forwarder = services.GetRequiredService<NodeForwarder>();
            if (stream.Head.Header(NodeForwarder.ForwardedHeader) is null && await forwarder.LocateRemoteExecAsync(id, cancellationToken) is { } remote)
                await HijackRelay.RelayAsync(stream, forwarder, remote.Node, logger, cancellationToken);
            else
                await stream.RejectAsync(404, $"No such exec instance: {id}");
            return;
        }
        var runtime = services.GetService<NodeContainerRuntime>();
        if (runtime is null)
        {
            await stream.RejectAsync(503, "this gateway has no container runtime");
            return;
        }
        try
        {
            var user = stream.LocalUser ?? services.GetRequiredService<CallerIdentity>().Resolve(stream.RemoteAddress, stream.Peer,
                stream.Head.Header(NodeForwarder.ForwardedHeader), stream.Head.Header(CallerIdentity.ForwardedForHeader));
            await PrepareAsync(exec, new RequestOrigin(user, Guid.NewGuid().ToString("N")));
        }
        catch (OperationRejectedException e)
        {
            await stream.RejectAsync((int)e.Code, e.Message);
            return;
        }
        var spec = SpecOf(exec);

        if (detach)
        {
            await stream.RespondEmptyAsync(200);
            _ = Task.Run(() => RunDetachedAsync(runtime, exec, spec), CancellationToken.None);
            return;
        }
        if (exec.Config.Tty) await RunTtyAsync(stream, runtime, exec, spec);
        else await RunPlainAsync(stream, runtime, exec, spec);
    }

    /// <summary>Docker's codes for an exec that could not start: 127 not found, 126 otherwise.</summary>
    private static int StartFailureCode(string message) =>
        message.Contains("not found", StringComparison.OrdinalIgnoreCase) || message.Contains("no such file", StringComparison.OrdinalIgnoreCase) ? 127 : 126;

    private async Task RunPlainAsync(HijackedStream stream, NodeContainerRuntime runtime, ExecInstance exec, ExecSpec spec)
    {
        await stream.AcceptAsync(tty: false);
        using var stopStdin = new CancellationTokenSource();
        var stdout = exec.Config.AttachStdout ? new FrameWriteStream(stream, StdStream.Stdout) : Stream.Null;
        var stderr = exec.Config.AttachStderr ? new FrameWriteStream(stream, StdStream.Stderr) : Stream.Null;
        var stdin = exec.Config.AttachStdin ? new PipeReadStream(stream.Stdin, stopStdin.Token) : null;
        int code;
        try
        {
            code = await runtime.Monitor.ExecAsync(exec.ContainerId, spec, stdin, stdout, stderr);
        }
        catch (OciRuntimeException e)
        {
            // runc's own stderr (the reason) already went to the client as stderr.
            code = StartFailureCode(e.RuntimeMessage);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or UnknownUserException)
        {
            code = 126;
            await stream.WriteFrameAsync(StdStream.Stdout, System.Text.Encoding.UTF8.GetBytes($"OCI runtime exec failed: {e.Message}: unknown\r\n"));
        }
        // Before the stream closes: the CLI inspects the exec for its exit code at EOF.
        exec.Finish(code);
        await stopStdin.CancelAsync();
    }

    private async Task RunTtyAsync(HijackedStream stream, NodeContainerRuntime runtime, ExecInstance exec, ExecSpec spec)
    {
        ConmonExecSession session;
        try
        {
            session = await runtime.Monitor.ExecAttachedAsync(exec.ContainerId, spec, exec.Config.AttachStdin);
        }
        catch (Exception e) when (e is OciRuntimeException or IOException or InvalidOperationException or UnknownUserException or TimeoutException)
        {
            var message = e is OciRuntimeException oci ? oci.RuntimeMessage : e.Message;
            exec.Finish(StartFailureCode(message));
            await stream.AcceptAsync(tty: true);
            await stream.WriteRawAsync(System.Text.Encoding.UTF8.GetBytes($"OCI runtime exec failed: {message}: unknown\r\n"));
            return;
        }
        await using (session)
        {
            exec.Pid = session.Pid;
            exec.Session = session;
            if (exec.PendingSize is { } size)
            {
                try { await session.ResizeAsync(size.Rows, size.Columns); } catch (IOException) { }
            }
            await stream.AcceptAsync(tty: true);
            using var stopStdin = new CancellationTokenSource();
            // docker exec closes the process's stdin when the client's ends.
            var stdinPump = exec.Config.AttachStdin
                ? AttachHijackHandler.PumpStdinAsync(stream, session.Attachment, closeOnEof: true, stopStdin.Token)
                : Task.CompletedTask;
            try
            {
                while (await session.Attachment.ReadAsync() is { } frame)
                {
                    if (stream.ClientGone) break;
                    await stream.WriteRawAsync(frame.Data);
                }
            }
            catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or ObjectDisposedException)
            {
                logger.LogDebug("exec {Id}: output ended with {Message}", exec.Id[..12], ex.Message);
            }
            int code;
            try
            {
                code = await session.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
            }
            catch (Exception ex) when (ex is TimeoutException or IOException or InvalidOperationException)
            {
                code = 137;
            }
            exec.Finish(code);
            await stopStdin.CancelAsync();
            await stdinPump;
        }
    }

    /// <summary>
    /// Exec start without a hijack (<c>docker exec -d</c> on a reused keep-alive connection reaches Kestrel, not the
    /// connection middleware): checks, records and runs the exec detached. Throws <see cref="OperationRejectedException"/>.
    /// </summary>
    public async Task StartDetachedAsync(string id, RequestOrigin origin)
    {
        var exec = execs.Find(id) ?? throw new OperationRejectedException(RejectionCode.NotFound, $"No such exec instance: {id}");
        var runtime = services.GetService<NodeContainerRuntime>()
                      ?? throw new OperationRejectedException(RejectionCode.Unavailable, "this gateway has no container runtime: exec on remote nodes is not available yet");
        await PrepareAsync(exec, origin);
        var spec = SpecOf(exec);
        _ = Task.Run(() => RunDetachedAsync(runtime, exec, spec), CancellationToken.None);
    }

    private static ExecSpec SpecOf(ExecInstance exec) => new()
    {
        Args = exec.Config.Cmd,
        Env = exec.Config.Env,
        User = exec.Config.User,
        WorkingDir = exec.Config.WorkingDir,
        Tty = exec.Config.Tty,
        Privileged = exec.Config.Privileged,
        ConsoleSize = exec.PendingSize ?? exec.Config.ConsoleSize,
    };

    /// <summary>The container must run; an exec runs once; the exec is recorded in the container's stream.</summary>
    private async Task PrepareAsync(ExecInstance exec, RequestOrigin origin)
    {
        var containers = services.GetRequiredService<ContainerService>();
        var snapshot = await containers.GetAsync(exec.ContainerId);
        if (snapshot.Status == ContainerStatus.Paused)
            throw new OperationRejectedException(RejectionCode.Conflict, $"Container {exec.ContainerId} is paused, unpause the container before exec");
        if (snapshot.Status != ContainerStatus.Running)
            throw new OperationRejectedException(RejectionCode.Conflict, $"Container {exec.ContainerId} is not running");
        if (!exec.TryStart())
            throw new OperationRejectedException(RejectionCode.Conflict,
                exec.Running ? $"Error: Exec command {exec.Id} is already running" : $"Error: Exec command {exec.Id} has already run");
        var config = exec.Config;
        try
        {
            await containers.SendAsync(new RecordContainerExec(exec.ContainerId, exec.Id, config.Cmd, config.User, config.Tty, origin));
        }
        catch (OperationRejectedException)
        {
            exec.Finish(126);
            throw;
        }
    }

    private async Task RunDetachedAsync(NodeContainerRuntime runtime, ExecInstance exec, ExecSpec spec)
    {
        try
        {
            if (spec.Tty)
            {
                await using var session = await runtime.Monitor.ExecAttachedAsync(exec.ContainerId, spec, stdin: false);
                exec.Pid = session.Pid;
                exec.Session = session;
                while (await session.Attachment.ReadAsync() is not null) { }
                exec.Finish(await session.WaitForExitAsync());
            }
            else
            {
                exec.Finish(await runtime.Monitor.ExecAsync(exec.ContainerId, spec, null, Stream.Null, Stream.Null));
            }
        }
        catch (Exception e)
        {
            logger.LogInformation("detached exec {Id} failed: {Message}", exec.Id[..12], e.Message);
            exec.Finish(e is OciRuntimeException oci ? StartFailureCode(oci.RuntimeMessage) : 126);
        }
    }

    /// <summary>Writes become stdcopy frames on the hijacked stream.</summary>
    private sealed class FrameWriteStream(HijackedStream target, StdStream kind) : Stream
    {
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) =>
            await target.WriteFrameAsync(kind, buffer.ToArray());

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
    }

    /// <summary>The client's stdin as a stream; ends at the client's half-close or when stopped.</summary>
    private sealed class PipeReadStream(PipeReader reader, CancellationToken stop) : Stream
    {
        private bool _done;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_done || buffer.IsEmpty) return 0;
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(stop, cancellationToken);
            try
            {
                while (true)
                {
                    var result = await reader.ReadAsync(linked.Token);
                    if (!result.Buffer.IsEmpty)
                    {
                        var n = (int)Math.Min(buffer.Length, result.Buffer.Length);
                        System.Buffers.BuffersExtensions.CopyTo(result.Buffer.Slice(0, n), buffer.Span);
                        reader.AdvanceTo(result.Buffer.GetPosition(n));
                        return n;
                    }
                    reader.AdvanceTo(result.Buffer.End);
                    if (result.IsCompleted || result.IsCanceled)
                    {
                        _done = true;
                        return 0;
                    }
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException or InvalidOperationException
                                           or Microsoft.AspNetCore.Connections.ConnectionResetException)
            {
                _done = true;
                return 0;
            }
        }
    }
}
