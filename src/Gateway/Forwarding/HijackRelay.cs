using System.Buffers;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Text;
using Flotilla.Cluster;
using Flotilla.Cluster.Security;
using Flotilla.Contracts;
using Flotilla.Gateway.Hijack;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;

namespace Flotilla.Gateway.Forwarding;

/// <summary>
/// A hijacked request (attach, exec start) for a container on another node: the request head and body go to the
/// node's Docker API on a fresh TCP connection, and from then on bytes are pumped both ways untouched (the 101 or
/// the error, frames, raw TTY bytes). Half-closes travel too: the client ending stdin shuts our sending side towards
/// the node (so <c>exec -i</c> sees EOF), and the node ending its output ends ours towards the client.
/// </summary>
public static class HijackRelay
{
    public static async Task RelayAsync(HijackedStream client, NodeForwarder forwarder, string node, ILogger logger, CancellationToken cancellationToken)
    {
        string endpoint;
        try
        {
            // One hop only (see NodeForwarder.ForwardedHeader).
            if (client.Head.Header(NodeForwarder.ForwardedHeader) is not null) throw NodeForwarder.Unavailable(node);
            endpoint = await forwarder.EndpointOfAsync(node, cancellationToken);
        }
        catch (OperationRejectedException e)
        {
            await client.RejectAsync((int)e.Code, e.Message);
            return;
        }

        var target = ClusterEndpoint.Parse(endpoint);
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        Upstream upstream;
        try
        {
            using var connect = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            connect.CancelAfter(NodeForwarder.ConnectTimeout);
            await socket.ConnectAsync(ParseEndpoint(target.HostPort), connect.Token);
            upstream = await Upstream.OpenAsync(socket, target.Tls ? forwarder.Tls : null, target.Tls, connect.Token);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or IOException or System.Security.Authentication.AuthenticationException)
        {
            logger.LogInformation("node {Node} at {Endpoint} refused a hijacked {Path}: {Message}", node, endpoint, client.Head.Path, e.Message);
            await client.RejectAsync(503, NodeForwarder.Unavailable(node).Message);
            return;
        }
        await using var _ = upstream;

        // From here on whatever the node answers is the answer.
        client.MarkRelayed();
        try
        {
            await upstream.Stream.WriteAsync(RequestBytes(client, forwarder.LocalNode, client.LocalUser ?? CallerIdentity.Direct(client.RemoteAddress), target.HostPort), cancellationToken);
            await upstream.Stream.FlushAsync(cancellationToken);
        }
        catch (Exception e) when (e is SocketException or IOException)
        {
            logger.LogInformation("node {Node} dropped a hijacked {Path}: {Message}", node, client.Head.Path, e.Message);
            return;
        }

        using var stopStdin = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var stdin = PumpStdinAsync(client, upstream, stopStdin.Token);
        await PumpOutputAsync(upstream, client, cancellationToken);
        // The node has ended the stream (or the client is gone): no more stdin towards it. The connection middleware
        // then shuts our side to the client and drains what it still sends.
        await stopStdin.CancelAsync();
        await stdin;
    }

    /// <summary>
    /// The connection to the node: the socket itself, or TLS over it with this process's cluster certificate (the node's
    /// checked against the cluster CA). A half-close is <c>shutdown(SD_SEND)</c> on a plain socket and TLS
    /// close_notify on TLS (the node's Kestrel sees the end of stdin either way and goes on sending output).
    /// </summary>
    private sealed class Upstream(Socket socket, Stream stream) : IAsyncDisposable
    {
        public Stream Stream { get; } = stream;

        public static async Task<Upstream> OpenAsync(Socket socket, ClusterTls? tls, bool wantsTls, CancellationToken cancellationToken)
        {
            var network = new NetworkStream(socket, ownsSocket: false);
            if (!wantsTls) return new Upstream(socket, network);
            if (tls is null) throw new IOException("the node requires the cluster's TLS and this process has no cluster certificate");
            var ssl = new SslStream(network, leaveInnerStreamOpen: false);
            await ssl.AuthenticateAsClientAsync(ClusterHttps.ClientOptions(tls, "flotilla"), cancellationToken);
            return new Upstream(socket, ssl);
        }

        public async Task ShutdownSendAsync()
        {
            if (Stream is SslStream ssl) await ssl.ShutdownAsync();
            else socket.Shutdown(SocketShutdown.Send);
        }

        public ValueTask DisposeAsync() => Stream.DisposeAsync();
    }

    /// <summary>The request as the client sent it; a chunked body was read whole, so it goes with a Content-Length.</summary>
    /// <remarks>The gateway checked the client's Host and Origin; the node is asked by its own address (as NodeForwarder does).</remarks>
    private static byte[] RequestBytes(HijackedStream client, string forwardedBy, string caller, string endpoint)
    {
        var head = client.Head;
        var text = new StringBuilder();
        text.Append(head.Method).Append(' ').Append(head.Target).Append(" HTTP/1.1\r\n");
        text.Append("Host: ").Append(endpoint).Append("\r\n");
        foreach (var (name, value) in head.Headers)
        {
            if (name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase) || name.Equals("Transfer-Encoding", StringComparison.OrdinalIgnoreCase) ||
                name.Equals(CallerIdentity.ForwardedForHeader, StringComparison.OrdinalIgnoreCase) ||
                name.Equals("Host", StringComparison.OrdinalIgnoreCase) || name.Equals("Origin", StringComparison.OrdinalIgnoreCase) ||
                name.StartsWith("Sec-Fetch-", StringComparison.OrdinalIgnoreCase))
                continue;
            text.Append(name).Append(": ").Append(value).Append("\r\n");
        }
        text.Append(NodeForwarder.ForwardedHeader).Append(": ").Append(forwardedBy).Append("\r\n");
        // The node records the client, not this gateway (see CallerIdentity).
        text.Append(CallerIdentity.ForwardedForHeader).Append(": ").Append(caller).Append("\r\n");
        if (!client.Body.IsEmpty || head.ContentLength is not null || head.IsChunked)
            text.Append("Content-Length: ").Append(client.Body.Length).Append("\r\n");
        text.Append("\r\n");
        var headBytes = Encoding.Latin1.GetBytes(text.ToString());
        var bytes = new byte[headBytes.Length + client.Body.Length];
        headBytes.CopyTo(bytes, 0);
        client.Body.CopyTo(bytes.AsMemory(headBytes.Length));
        return bytes;
    }

    private static async Task PumpStdinAsync(HijackedStream client, Upstream upstream, CancellationToken stop)
    {
        // Kestrel's pipe hands out 4 KiB segments: coalesced, one send per 64 KiB instead of sixteen.
        var chunk = ArrayPool<byte>.Shared.Rent(64 * 1024);
        try
        {
            while (true)
            {
                var result = await client.Stdin.ReadAsync(stop);
                var pending = result.Buffer;
                while (!pending.IsEmpty)
                {
                    var take = (int)Math.Min(pending.Length, chunk.Length);
                    pending.Slice(0, take).CopyTo(chunk);
                    await upstream.Stream.WriteAsync(chunk.AsMemory(0, take), stop);
                    pending = pending.Slice(take);
                }
                client.Stdin.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    // The client's half-close (stdin EOF) goes on to the node as ours.
                    await upstream.Stream.FlushAsync(stop);
                    await upstream.ShutdownSendAsync();
                    return;
                }
                if (result.IsCanceled) return;
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or IOException or ObjectDisposedException
                                      or InvalidOperationException or ConnectionResetException)
        {
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }
    }

    private static async Task PumpOutputAsync(Upstream upstream, HijackedStream client, CancellationToken cancellationToken)
    {
        var buffer = new byte[64 * 1024];
        try
        {
            while (true)
            {
                var read = await upstream.Stream.ReadAsync(buffer, cancellationToken);
                if (read == 0) return;
                await client.WriteRawAsync(buffer.AsMemory(0, read));
                if (client.ClientGone) return;
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or IOException or ObjectDisposedException)
        {
        }
    }

    /// <summary><c>host:port</c> as nodes register it (<c>127.0.0.1:2375</c>, <c>[::1]:2375</c>, <c>node-a:2375</c>).</summary>
    public static EndPoint ParseEndpoint(string endpoint)
    {
        var colon = endpoint.LastIndexOf(':');
        if (colon > 0 && int.TryParse(endpoint[(colon + 1)..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port)
            && port is > 0 and <= IPEndPoint.MaxPort)
        {
            var host = endpoint[..colon];
            if (host.StartsWith('[') && host.EndsWith(']') && IPAddress.TryParse(host[1..^1], out var v6)) return new IPEndPoint(v6, port);
            if (!host.Contains(':') && Uri.CheckHostName(host) != UriHostNameType.Unknown)
                return IPAddress.TryParse(host, out var v4) ? new IPEndPoint(v4, port) : new DnsEndPoint(host, port);
        }
        throw new FormatException($"not a host:port endpoint: {endpoint}");
    }
}
