using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;

namespace Flotilla.Gateway.Hijack;

/// <summary>Docker's stream ids in stdcopy frames.</summary>
public enum StdStream : byte { Stdin = 0, Stdout = 1, Stderr = 2, SystemError = 3 }

/// <summary>
/// A connection taken over from HTTP after an attach or exec-start request: stdin from the client,
/// output back as stdcopy frames (no TTY) or raw bytes (TTY). One writer at a time; every write is
/// flushed at once, as the docker CLI expects.
/// </summary>
public sealed class HijackedStream(ConnectionContext connection, HttpRequestHead head, ReadOnlyMemory<byte> body)
{
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private bool _answered;

    public HttpRequestHead Head { get; } = head;

    /// <summary>The address the client connects from (null on a unix socket).</summary>
    public System.Net.IPAddress? RemoteAddress => (connection.RemoteEndPoint as System.Net.IPEndPoint)?.Address;

    /// <summary>The local user on the unix socket (<c>uid:1000(alice)</c>), or null on TCP.</summary>
    public string? LocalUser => Listeners.ClientConnection.PeerUserOf(connection);
    public ReadOnlyMemory<byte> Body { get; } = body;

    /// <summary>The cluster process whose certificate opened this connection (on a node's cluster-only API), else null.</summary>
    public Flotilla.Cluster.Security.ClusterPeer? Peer { get; init; }

    private bool IsTls => connection.Features.Get<Microsoft.AspNetCore.Connections.Features.ITlsHandshakeFeature>() is not null;

    /// <summary>The client certificate of a TLS connection.</summary>
    public System.Security.Cryptography.X509Certificates.X509Certificate2? ClientCertificate =>
        connection.Features.Get<Microsoft.AspNetCore.Connections.Features.ITlsHandshakeFeature>() is not null
            ? connection.Features.Get<Microsoft.AspNetCore.Http.Features.ITlsConnectionFeature>()?.ClientCertificate
            : null;

    /// <summary>Bytes the client sends after the request: the container's stdin. Completes when the client half-closes.</summary>
    public PipeReader Stdin => connection.Transport.Input;

    /// <summary>True once the client is gone (a write failed or the connection was reset).</summary>
    public bool ClientGone { get; private set; }

    /// <summary>Answers the request: 101 when the client asked to upgrade, else Docker's legacy 200 with a raw stream.</summary>
    public async Task AcceptAsync(bool tty, bool multiplexedContentType = true)
    {
        var contentType = tty || !multiplexedContentType ? "application/vnd.docker.raw-stream" : "application/vnd.docker.multiplexed-stream";
        var response = Head.WantsUpgrade
            ? $"HTTP/1.1 101 UPGRADED\r\nContent-Type: {contentType}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
            : $"HTTP/1.1 200 OK\r\nContent-Type: {contentType}\r\n\r\n";
        _answered = true;
        await WriteAsync(Encoding.ASCII.GetBytes(response));
    }

    /// <summary>Refuses the request with Docker's error shape; the connection closes afterwards.</summary>
    public async Task RejectAsync(int status, string message)
    {
        if (_answered) throw new InvalidOperationException("the stream was already accepted");
        _answered = true;
        var json = System.Text.Json.JsonSerializer.Serialize(new { message });
        var reason = status switch { 400 => "Bad Request", 403 => "Forbidden", 404 => "Not Found", 409 => "Conflict", 500 => "Internal Server Error", 503 => "Service Unavailable", _ => "Error" };
        var response = $"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {Encoding.UTF8.GetByteCount(json)}\r\nConnection: close\r\n\r\n{json}";
        await WriteAsync(Encoding.UTF8.GetBytes(response));
    }

    /// <summary>The answer comes from another node through a relay: from now on this stream writes no answer of its own.</summary>
    public void MarkRelayed()
    {
        if (_answered) throw new InvalidOperationException("the stream was already answered");
        _answered = true;
    }

    /// <summary>A plain HTTP answer without a body (exec start with Detach): the connection closes afterwards.</summary>
    public async Task RespondEmptyAsync(int status = 200)
    {
        if (_answered) throw new InvalidOperationException("the stream was already accepted");
        _answered = true;
        var reason = status switch { 200 => "OK", 204 => "No Content", _ => "OK" };
        await WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"));
    }

    /// <summary>One stdcopy frame: 8-byte header (stream, 0, 0, 0, big-endian length) and the payload.</summary>
    public async Task WriteFrameAsync(StdStream stream, ReadOnlyMemory<byte> payload)
    {
        if (payload.IsEmpty) return;
        var frame = new byte[8 + payload.Length];
        frame[0] = (byte)stream;
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(4), (uint)payload.Length);
        payload.CopyTo(frame.AsMemory(8));
        await WriteAsync(frame);
    }

    public Task WriteRawAsync(ReadOnlyMemory<byte> bytes) => bytes.IsEmpty ? Task.CompletedTask : WriteAsync(bytes);

    private async Task WriteAsync(ReadOnlyMemory<byte> bytes)
    {
        if (ClientGone) return;
        await _writeLock.WaitAsync();
        try
        {
            var socket = IsTls ? null : connection.Features.Get<IConnectionSocketFeature>()?.Socket;
            if (socket is not null)
            {
                // Straight to the socket: Kestrel's transport output resets the connection on close
                // while the client still sends stdin, truncating output.
                var offset = 0;
                while (offset < bytes.Length)
                    offset += await socket.SendAsync(bytes[offset..], SocketFlags.None);
            }
            else
            {
                await connection.Transport.Output.WriteAsync(bytes);
                await connection.Transport.Output.FlushAsync();
            }
        }
        catch (Exception ex) when (ex is SocketException or IOException or ObjectDisposedException or ConnectionResetException)
        {
            ClientGone = true;
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>
    /// A lingering close: shut our sending side, then drain what the client still sends (bounded)
    /// so the close is not a reset that would cut off output the client has not read yet.
    /// </summary>
    public async Task CloseAsync(TimeSpan? drainFor = null)
    {
        try
        {
            // Over TLS (a node's cluster API) the end is TLS close_notify, written after the output through the same
            // TLS stream, so it cannot overtake it; a FIN on the raw socket could overtake bytes still in Kestrel's pipes.
            if (connection.Features.Get<Microsoft.AspNetCore.Server.Kestrel.Core.Features.ISslStreamFeature>()?.SslStream is { } ssl)
            {
                await connection.Transport.Output.FlushAsync();
                await ssl.ShutdownAsync();
            }
            else connection.Features.Get<IConnectionSocketFeature>()?.Socket?.Shutdown(SocketShutdown.Send);
            using var drain = new CancellationTokenSource(drainFor ?? TimeSpan.FromSeconds(5));
            while (true)
            {
                var result = await connection.Transport.Input.ReadAsync(drain.Token);
                connection.Transport.Input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted || result.IsCanceled) break;
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or IOException or ObjectDisposedException or ConnectionResetException or InvalidOperationException)
        {
        }
    }
}

/// <summary>Serves one kind of hijacked request (attach, exec start).</summary>
public interface IHijackHandler
{
    /// <summary>Whether this handler takes the (version-stripped) path.</summary>
    bool Matches(string path);

    Task HandleAsync(HijackedStream stream, string path, CancellationToken cancellationToken);
}
