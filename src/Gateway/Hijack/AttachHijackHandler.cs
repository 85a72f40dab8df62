using System.Buffers;
using Flotilla.Cluster;
using Flotilla.Cluster.Containers;
using Flotilla.Contracts;
using Flotilla.Contracts.Containers;
using Flotilla.Gateway.Forwarding;
using Flotilla.NodeRuntime.Containers;
using Flotilla.NodeRuntime.Oci;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OciStream = Flotilla.NodeRuntime.Oci.StdStream;

namespace Flotilla.Gateway.Hijack;

/// <summary>
/// <c>POST /containers/{id}/attach</c>: the container's live stdio over the hijacked connection. A container that
/// is not running yet (docker run, docker start -a attach before start) is attached when its next run is created,
/// before its process starts, so even the output of a fast <c>echo</c> is seen. The stream ends when the
/// container's output ends (conmon closes the attach socket when the process exits).
/// </summary>
public sealed class AttachHijackHandler(IServiceProvider services, ILogger<AttachHijackHandler> logger) : IHijackHandler
{
    /// <summary>How long an attach to a container that does not run waits for it to start.</summary>
    public static TimeSpan StartWait { get; set; } = TimeSpan.FromSeconds(30);

    public bool Matches(string path) => path.StartsWith("/containers/", StringComparison.Ordinal) && path.EndsWith("/attach", StringComparison.Ordinal);

    public async Task HandleAsync(HijackedStream stream, string path, CancellationToken cancellationToken)
    {
        var name = Uri.UnescapeDataString(path["/containers/".Length..^"/attach".Length]);
        var query = stream.Head.Query();
        bool Flag(string key) => query.TryGetValue(key, out var v) && v is "1" or "true" or "True";
        var wantStdin = Flag("stdin");
        var wantStdout = Flag("stdout");
        var wantStderr = Flag("stderr");

        var containers = services.GetRequiredService<ContainerService>();
        var forwarder = services.GetRequiredService<NodeForwarder>();
        ContainerSnapshot snapshot;
        try
        {
            var view = await containers.ResolveAsync(name, cancellationToken);
            // The container's stdio is on its node: relay the whole hijack there.
            if (!forwarder.IsLocal(view.Node))
            {
                await HijackRelay.RelayAsync(stream, forwarder, view.Node, logger, cancellationToken);
                return;
            }
            snapshot = await containers.GetAsync(view.ContainerId);
        }
        catch (OperationRejectedException e)
        {
            await stream.RejectAsync((int)e.Code, e.Message);
            return;
        }
        var runtime = services.GetRequiredService<NodeContainerRuntime>();
        var definition = snapshot.Definition!;
        var id = snapshot.ContainerId;

        ContainerAttachment? attachment = null;
        Task<ContainerAttachment>? nextRun = null;
        using var waitForRun = new CancellationTokenSource(StartWait);
        if (snapshot.Status is ContainerStatus.Running or ContainerStatus.Paused && File.Exists(runtime.Monitor.PathsFor(id).AttachSocket))
        {
            try
            {
                attachment = await runtime.Monitor.AttachAsync(id, cancellationToken);
            }
            catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException)
            {
                logger.LogDebug("attach to running {Id} failed ({Message}); waiting for its next run", id[..12], ex.Message);
            }
        }
        // Registered before the answer: the client sends start only once it has the 101.
        if (attachment is null) nextRun = runtime.AttachToNextRunAsync(id, waitForRun.Token);

        await stream.AcceptAsync(definition.Tty);
        if (attachment is null)
        {
            try
            {
                attachment = await nextRun!;
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException or System.Net.Sockets.SocketException)
            {
                logger.LogInformation("attach to {Id}: the container did not start ({Message})", id[..12], ex.Message);
                return;
            }
        }

        await using (attachment)
        {
            using var stopStdin = new CancellationTokenSource();
            using var detached = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            // As moby: when the client ends stdin, a StdinOnce non-TTY container gets its stdin closed; any
            // other attach ends there (that is how the CLI detaches on Ctrl-P Ctrl-Q), the container runs on.
            var endsAttach = !(definition.StdinOnce && !definition.Tty);
            var keys = DetachKeys.Parse(stream.Head.Query().GetValueOrDefault("detachKeys")) ?? DetachKeys.Default;
            var stdinPump = wantStdin
                ? PumpStdinAsync(stream, attachment, definition.StdinOnce && !definition.Tty, stopStdin.Token, new DetachKeys(keys))
                    .ContinueWith(t => { if (t.Result == StdinEnd.Detached || (t.Result == StdinEnd.Closed && endsAttach)) detached.Cancel(); }, TaskScheduler.Default)
                : Task.CompletedTask;
            try
            {
                while (await attachment.ReadAsync(detached.Token) is { } frame)
                {
                    if (stream.ClientGone) break;
                    var isStderr = frame.Stream == OciStream.Stderr;
                    if (isStderr ? !wantStderr : !wantStdout) continue;
                    if (definition.Tty) await stream.WriteRawAsync(frame.Data);
                    else await stream.WriteFrameAsync(isStderr ? StdStream.Stderr : StdStream.Stdout, frame.Data);
                }
            }
            catch (OperationCanceledException) when (detached.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                logger.LogDebug("attach to {Id}: the client ended stdin; detached", id[..12]);
            }
            catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or ObjectDisposedException)
            {
                logger.LogDebug("attach to {Id}: output ended with {Message}", id[..12], ex.Message);
            }
            await stopStdin.CancelAsync();
            await stdinPump;
        }
    }

    /// <summary>
    /// Client bytes into the container's stdin; the client's half-close closes it only when <paramref name="closeOnEof"/>.
    /// Returns true when the client ended its stdin (rather than the pump being stopped).
    /// </summary>
    internal static async Task<StdinEnd> PumpStdinAsync(HijackedStream stream, ContainerAttachment attachment, bool closeOnEof, CancellationToken stop,
        DetachKeys? detachKeys = null)
    {
        try
        {
            while (true)
            {
                var result = await stream.Stdin.ReadAsync(stop);
                foreach (var segment in result.Buffer)
                {
                    if (detachKeys is null)
                    {
                        await attachment.WriteStdinAsync(segment, stop);
                        continue;
                    }
                    var (forward, detach) = detachKeys.Feed(segment.Span);
                    if (forward.Length > 0) await attachment.WriteStdinAsync(forward, stop);
                    if (detach)
                    {
                        stream.Stdin.AdvanceTo(result.Buffer.End);
                        return StdinEnd.Detached;
                    }
                }
                stream.Stdin.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    if (closeOnEof && result.IsCompleted) attachment.CloseStdin();
                    return result.IsCompleted ? StdinEnd.Closed : StdinEnd.Stopped;
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or System.Net.Sockets.SocketException
                                       or ObjectDisposedException or InvalidOperationException or Microsoft.AspNetCore.Connections.ConnectionResetException)
        {
        }
        return StdinEnd.Stopped;
    }
}

/// <summary>How a stdin pump ended: the client closed its stdin, typed the detach keys, or the pump was stopped.</summary>
internal enum StdinEnd { Stopped, Closed, Detached }
