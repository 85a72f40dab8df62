using System.Buffers;
using System.IO.Pipelines;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;

namespace Flotilla.Gateway.Hijack;

/// <summary>
/// Kestrel connection middleware that takes over Docker's hijacked requests (attach, exec start)
/// before Kestrel's HTTP/1.1 layer sees them: Kestrel refuses to upgrade a request with a body and
/// aborts a request whose client half-closes. It peeks at the first request of each connection and serves a hijack
/// at once; otherwise Kestrel serves the connection through a <see cref="ReusedConnection"/>, which hands a later
/// hijacked request back (clients with connection pools send them on a reused connection, as dockerd allows).
/// See /work/shared/design/hijack-on-kestrel.md for the traps.
/// </summary>
/// <param name="clusterTls">On a node's cluster-only API: only a gateway's certificate may attach or exec (the TLS
/// handshake already refused strangers; a node's certificate is for blobs).</param>
public sealed partial class HijackConnectionMiddleware(ConnectionDelegate next, IReadOnlyList<IHijackHandler> handlers, ILogger logger,
    Listeners.BrowserPolicy browsers, Cluster.Audit.ApiAccessLog denials, Listeners.StreamsEndOnShutdown streams,
    Flotilla.Cluster.Security.ClusterTls? clusterTls = null, Flotilla.Cluster.Security.ClusterAccessLog? access = null)
{
    private static readonly TimeSpan PeekTimeout = TimeSpan.FromSeconds(30);
    private const long MaxBodyBytes = 1 << 20;

    [GeneratedRegex(@"^(/v[0-9]+\.[0-9]+)?(/(exec/[^/]+/start|containers/[^/]+/attach))$")]
    private static partial Regex HijackPath();

    /// <summary>Whether a request path (with or without the API version) is attach or exec start.</summary>
    internal static bool IsHijackPath(string path) => HijackPath().IsMatch(path);

    public async Task OnConnectedAsync(ConnectionContext connection)
    {
        var input = connection.Transport.Input;
        SequencePosition? examined = null;
        using var timeout = new CancellationTokenSource(PeekTimeout);
        while (true)
        {
            ReadResult result;
            try
            {
                result = await input.ReadAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                connection.Abort(new ConnectionAbortedException("no request head in time"));
                return;
            }
            var buffer = result.Buffer;

            var line = HttpRequestHead.PeekRequestLine(buffer);
            if (line is { } l && (l.Method != "POST" || !HijackPath().IsMatch(l.Path)))
            {
                HandOver(input, buffer, examined);
                await ServeHttpAsync(connection);
                return;
            }

            HttpRequestHead? head;
            SequencePosition headEnd;
            try
            {
                if (!HttpRequestHead.TryParse(buffer, out head, out headEnd))
                {
                    if (result.IsCompleted)
                    {
                        HandOver(input, buffer, examined);
                        await ServeHttpAsync(connection);
                        return;
                    }
                    input.AdvanceTo(buffer.Start, buffer.End);
                    examined = buffer.End;
                    continue;
                }
            }
            catch (FormatException)
            {
                // Let Kestrel answer a malformed request the usual way.
                HandOver(input, buffer, examined);
                await ServeHttpAsync(connection);
                return;
            }

            input.AdvanceTo(headEnd);
            await ReadBodyAndHijackAsync(connection, head!);
            return;
        }
    }

    /// <summary>
    /// Gives the unread bytes back to Kestrel. Marking them examined would make Kestrel's first read
    /// wait for new bytes that may never come, so only what was examined before this read is marked.
    /// </summary>
    private static void HandOver(PipeReader input, ReadOnlySequence<byte> buffer, SequencePosition? examined) =>
        input.AdvanceTo(buffer.Start, examined ?? buffer.Start);

    /// <summary>
    /// Kestrel serves the connection through a <see cref="ReusedConnection"/>; a hijacked request among its requests
    /// is handed back here and served on the real connection, which ends with the stream.
    /// </summary>
    private async Task ServeHttpAsync(ConnectionContext connection)
    {
        var reused = new ReusedConnection(connection);
        await using (reused)
        {
            var kestrel = next(reused);
            if (await Task.WhenAny(kestrel, reused.HandedOver) == reused.HandedOver)
            {
                var request = await reused.HandedOver;
                try
                {
                    await reused.StopOutputAsync();
                    await HijackAsync(connection, request.Head, request.Body);
                }
                finally
                {
                    request.Finished.TrySetResult();
                }
            }
            await kestrel;
            await reused.StopOutputAsync();
        }
    }

    private async Task ReadBodyAndHijackAsync(ConnectionContext connection, HttpRequestHead head)
    {
        ReadOnlyMemory<byte> body;
        try
        {
            body = await ReadBodyAsync(connection.Transport.Input, head);
        }
        catch (Exception ex) when (ex is FormatException or InvalidDataException)
        {
            var bad = new HijackedStream(connection, head, ReadOnlyMemory<byte>.Empty);
            await bad.RejectAsync(400, ex.Message);
            await bad.CloseAsync(TimeSpan.FromSeconds(1));
            return;
        }
        await HijackAsync(connection, head, body);
    }

    private async Task HijackAsync(ConnectionContext connection, HttpRequestHead head, ReadOnlyMemory<byte> body)
    {
        var path = HijackPath().Match(head.Path).Groups[2].Value;
        // A stream outlives no process: cut when it stops (see StreamsEndOnShutdown).
        using var cut = streams.AbortOnCut(connection);
        var stream = new HijackedStream(connection, head, body);
        if (clusterTls is not null)
        {
            var check = clusterTls.Verify(stream.ClientCertificate);
            if (check.Peer is not { Role: Flotilla.Cluster.Security.ClusterRole.Gateway } peer)
            {
                var reason = check.Refusal ?? $"a {Flotilla.Cluster.Security.ClusterCa.RoleName(check.Peer!.Role)} certificate may not {head.Method} {path}";
                access?.Refused(Flotilla.Contracts.Security.ClusterSurfaces.NodeApi, stream.RemoteAddress?.ToString(), stream.ClientCertificate?.Subject, reason);
                await stream.RejectAsync(403, "only a gateway of this cluster may " + path);
                await stream.CloseAsync(TimeSpan.FromSeconds(1));
                return;
            }
            stream = new HijackedStream(connection, head, body) { Peer = peer };
        }
        // Hijacked requests skip the HTTP pipeline, so its guard (Origin, Host, JSON bodies) is repeated here.
        if (await RefuseAsync(connection, head, body, stream))
        {
            await stream.CloseAsync();
            return;
        }
        // The last registration wins, as usual in DI: a host may override a built-in handler.
        var handler = handlers.LastOrDefault(h => h.Matches(path));
        try
        {
            if (handler is null)
                await stream.RejectAsync(404, "page not found");
            else
                await handler.HandleAsync(stream, path, streams.Cut);
        }
        catch (OperationCanceledException) when (streams.Cut.IsCancellationRequested)
        {
            logger.LogDebug("hijacked request {Path} ended: the process is stopping", path);
        }
        catch (Exception ex)
        {
            var requestId = Guid.NewGuid().ToString("N");
            logger.LogError(ex, "hijacked request {Path} failed (request {RequestId})", path, requestId);
            try
            {
                await stream.RejectAsync(500, $"internal error (request {requestId}); the server log has the details");
            }
            catch (InvalidOperationException)
            {
                // Already streaming: the client learns through the closed connection.
            }
        }
        finally
        {
            await stream.CloseAsync();
        }
    }

    private async Task<bool> RefuseAsync(ConnectionContext connection, HttpRequestHead head, ReadOnlyMemory<byte> body, HijackedStream stream)
    {
        var listener = Listeners.ClientConnection.ListenerOf(connection.Items) ?? Contracts.Access.ClientListener.DockerApi;
        var refusal = browsers.RefusalOf(listener, head.Header("Host"), head.Header("Origin"), head.Header("Sec-Fetch-Site"));
        if (refusal is null && !body.IsEmpty && !Listeners.ClientRequestGuard.IsJson(head.Header("Content-Type")))
            refusal = (400, $"unsupported Content-Type header ({head.Header("Content-Type")}): must be 'application/json'");
        if (refusal is not { } r) return false;
        var remote = (connection.RemoteEndPoint as System.Net.IPEndPoint)?.Address;
        await Listeners.ClientRequestGuard.RecordAsync(denials, logger, new Contracts.Access.ApiAccessDenied(listener.ToString(), head.Method,
            Listeners.ClientRequestGuard.Truncate(head.Path) ?? "", r.Reason, Listeners.ClientRequestGuard.Truncate(head.Header("Origin")),
            Listeners.ClientRequestGuard.Truncate(head.Header("Host")), remote?.ToString(), DateTimeOffset.UtcNow),
            Listeners.ClientConnection.PeerUserOf(connection) ?? Forwarding.CallerIdentity.Direct(remote), Guid.NewGuid().ToString("N"));
        await stream.RejectAsync(r.Status, r.Reason);
        return true;
    }

    /// <summary>Reads exactly the request body (Content-Length or chunked); what follows is stdin.</summary>
    private static async Task<ReadOnlyMemory<byte>> ReadBodyAsync(PipeReader input, HttpRequestHead head)
    {
        if (head.IsChunked) return await ReadChunkedAsync(input);
        var length = head.ContentLength ?? 0;
        if (length == 0) return ReadOnlyMemory<byte>.Empty;
        if (length > MaxBodyBytes) throw new InvalidDataException("request body too large");
        while (true)
        {
            var result = await input.ReadAsync();
            if (result.Buffer.Length >= length)
            {
                var body = result.Buffer.Slice(0, length).ToArray();
                input.AdvanceTo(result.Buffer.GetPosition(length));
                return body;
            }
            if (result.IsCompleted) throw new InvalidDataException("request body truncated");
            input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
    }

    private static async Task<ReadOnlyMemory<byte>> ReadChunkedAsync(PipeReader input)
    {
        var body = new ArrayBufferWriter<byte>();
        while (true)
        {
            var result = await input.ReadAsync();
            var reader = new SequenceReader<byte>(result.Buffer);
            var consumed = result.Buffer.Start;
            var done = false;
            while (reader.TryReadTo(out ReadOnlySequence<byte> sizeLine, "\r\n"u8))
            {
                var sizeText = System.Text.Encoding.ASCII.GetString(sizeLine.ToArray()).Split(';')[0].Trim();
                if (!int.TryParse(sizeText, System.Globalization.NumberStyles.HexNumber, null, out var size) || size < 0)
                    throw new FormatException("bad chunk size");
                if (body.WrittenCount + size > MaxBodyBytes) throw new InvalidDataException("request body too large");
                if (reader.Remaining < size + 2) break;
                if (size == 0)
                {
                    // Last chunk; no trailers are expected from Docker clients.
                    if (!reader.IsNext("\r\n"u8, advancePast: true)) break;
                    consumed = reader.Position;
                    done = true;
                    break;
                }
                body.Write(reader.UnreadSequence.Slice(0, size).ToArray());
                reader.Advance(size);
                if (!reader.IsNext("\r\n"u8, advancePast: true)) throw new FormatException("bad chunk terminator");
                consumed = reader.Position;
            }
            if (done)
            {
                input.AdvanceTo(consumed);
                return body.WrittenMemory;
            }
            if (result.IsCompleted) throw new InvalidDataException("request body truncated");
            input.AdvanceTo(consumed, result.Buffer.End);
        }
    }
}
