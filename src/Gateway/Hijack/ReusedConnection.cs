using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Flotilla.Gateway.Hijack;

/// <summary>A hijacked request met by Kestrel on a reused connection, handed to the connection middleware.</summary>
internal sealed record HandedOverRequest(HttpRequestHead Head, ReadOnlyMemory<byte> Body, TaskCompletionSource Finished);

/// <summary>
/// The stand-in connection Kestrel serves a Docker API connection through, so that a hijacked request (attach,
/// exec start) may come at any point of the connection, as dockerd allows (docker-py, dockerode's keep-alive agent
/// and docker-compose reuse pooled connections). Kestrel parses every request; when one is a hijack,
/// <see cref="TakeoverMiddleware"/> (early in the app pipeline) hands its head and body over, and the connection
/// middleware serves the stream on the real connection once every earlier response is on the wire.
/// Kestrel writes into a pipe of ours, pumped to the socket the same way a hijacked stream writes (see
/// <see cref="HijackedStream"/>), so nothing Kestrel wrote can overtake or follow the stream. Kestrel never sees the
/// real connection close while the stream runs: the CLI half-closes once the stream is up, which Kestrel takes for
/// the end and would abort the connection.
/// </summary>
internal sealed class ReusedConnection : ConnectionContext
{
    public const string ItemKey = "flotilla-reused-connection";

    private readonly ConnectionContext _real;
    private readonly Pipe _output = new(new PipeOptions(pauseWriterThreshold: 1 << 20, resumeWriterThreshold: 1 << 19, useSynchronizationContext: false));
    private readonly CancellationTokenSource _closed = new();
    private readonly CancellationTokenRegistration _realClosed;
    private readonly TaskCompletionSource<HandedOverRequest> _handedOver = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Socket? _socket;
    private readonly Task _pump;
    private volatile bool _stopping;
    private volatile bool _takenOver;

    public ReusedConnection(ConnectionContext real)
    {
        _real = real;
        Transport = new DuplexPipe(real.Transport.Input, _output.Writer);
        var tls = real.Features.Get<Microsoft.AspNetCore.Connections.Features.ITlsHandshakeFeature>() is not null;
        _socket = tls ? null : real.Features.Get<IConnectionSocketFeature>()?.Socket;
        real.Items[ItemKey] = this;
        _realClosed = real.ConnectionClosed.UnsafeRegister(static s => ((ReusedConnection)s!).OnRealClosed(), this);
        _pump = Task.Run(PumpAsync);
    }

    /// <summary>Completes when the app pipeline hands over a hijacked request.</summary>
    public Task<HandedOverRequest> HandedOver => _handedOver.Task;

    /// <summary>Called by the app pipeline: the connection middleware serves the stream; returns when it has ended.</summary>
    public async Task HandOverAsync(HttpRequestHead head, ReadOnlyMemory<byte> body)
    {
        var finished = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _takenOver = true;
        if (!_handedOver.TrySetResult(new HandedOverRequest(head, body, finished)))
            throw new InvalidOperationException("a connection is taken over once");
        await finished.Task;
    }

    /// <summary>Stops the pump once everything Kestrel has flushed so far is written (earlier responses are complete by now).</summary>
    public async Task StopOutputAsync()
    {
        _stopping = true;
        try
        {
            _output.Reader.CancelPendingRead();
        }
        catch (InvalidOperationException)
        {
        }
        await _pump;
    }

    private async Task PumpAsync()
    {
        var reader = _output.Reader;
        try
        {
            while (true)
            {
                var result = await reader.ReadAsync();
                foreach (var segment in result.Buffer) await WriteAsync(segment);
                if (_socket is null && !result.Buffer.IsEmpty) await _real.Transport.Output.FlushAsync();
                reader.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted || (result.IsCanceled && _stopping)) break;
            }
            await reader.CompleteAsync();
        }
        catch (Exception ex) when (ex is SocketException or IOException or ObjectDisposedException or ConnectionResetException or InvalidOperationException)
        {
            // The client is gone: Kestrel's next write ends its request.
            await reader.CompleteAsync(ex);
            if (!_takenOver) _real.Abort(new ConnectionAbortedException("the client is gone", ex));
        }
    }

    private async ValueTask WriteAsync(ReadOnlyMemory<byte> bytes)
    {
        if (_socket is null)
        {
            await _real.Transport.Output.WriteAsync(bytes);
            return;
        }
        var offset = 0;
        while (offset < bytes.Length)
            offset += await _socket.SendAsync(bytes[offset..], SocketFlags.None);
    }

    private void OnRealClosed()
    {
        if (!_takenOver) FireClosed();
    }

    private void FireClosed() =>
        // Not inline: Kestrel's callback aborts, which comes back here.
        ThreadPool.UnsafeQueueUserWorkItem(static s =>
        {
            try
            {
                ((CancellationTokenSource)s!).Cancel();
            }
            catch (ObjectDisposedException)
            {
            }
        }, _closed);

    public override string ConnectionId { get => _real.ConnectionId; set => _real.ConnectionId = value; }
    public override IFeatureCollection Features => _real.Features;
    public override IDictionary<object, object?> Items { get => _real.Items; set => _real.Items = value; }
    public override IDuplexPipe Transport { get; set; }
    public override CancellationToken ConnectionClosed { get => _closed.Token; set { } }
    public override EndPoint? LocalEndPoint { get => _real.LocalEndPoint; set { } }
    public override EndPoint? RemoteEndPoint { get => _real.RemoteEndPoint; set { } }

    /// <summary>Kestrel's abort: passed on to the real connection unless a stream has taken it over (it ends the connection itself).</summary>
    public override void Abort(ConnectionAbortedException abortReason)
    {
        if (!_takenOver) _real.Abort(abortReason);
        FireClosed();
    }

    public override async ValueTask DisposeAsync()
    {
        await _realClosed.DisposeAsync();
        _real.Items.Remove(ItemKey);
        // Callbacks may still be queued (FireClosed): the token source is left to the collector.
    }

    private sealed record DuplexPipe(PipeReader Input, PipeWriter Output) : IDuplexPipe;
}

/// <summary>
/// First in the Docker API's app pipeline: a hijacked request that Kestrel parsed on a reused connection is handed
/// to the connection middleware (<see cref="ReusedConnection"/>). A detached exec start stays an ordinary request.
/// </summary>
internal static class TakeoverMiddleware
{
    private const int MaxBodyBytes = 1 << 20;

    public static Func<RequestDelegate, RequestDelegate> Create() => next => async context =>
    {
        if (!HttpMethods.IsPost(context.Request.Method) ||
            context.Features.Get<IConnectionItemsFeature>()?.Items is not { } items ||
            !items.TryGetValue(ReusedConnection.ItemKey, out var value) || value is not ReusedConnection connection ||
            !HijackConnectionMiddleware.IsHijackPath(context.Request.Path.Value ?? ""))
        {
            await next(context);
            return;
        }
        byte[] body = [];
        if (context.Request.ContentLength is > 0 || context.Request.Headers.TransferEncoding.Count > 0)
        {
            using var buffer = new MemoryStream();
            var chunk = new byte[16 * 1024];
            int read;
            while ((read = await context.Request.Body.ReadAsync(chunk, context.RequestAborted)) > 0)
            {
                if (buffer.Length + read > MaxBodyBytes)
                {
                    await Http.JsonReply.ErrorAsync(context, StatusCodes.Status413PayloadTooLarge, "request body too large");
                    return;
                }
                buffer.Write(chunk, 0, read);
            }
            body = buffer.ToArray();
        }
        if (IsDetachedExecStart(context.Request.Path.Value!, body))
        {
            context.Request.Body = new MemoryStream(body);
            await next(context);
            return;
        }
        var target = context.Features.Get<IHttpRequestFeature>()?.RawTarget ?? context.Request.Path + context.Request.QueryString;
        var head = HttpRequestHead.Of(context.Request.Method, target,
            context.Request.Headers.Select(h => KeyValuePair.Create(h.Key, h.Value.ToString())));
        await connection.HandOverAsync(head, body);
        // The stream has ended and closed the connection: Kestrel must write nothing more.
        context.Abort();
    };

    private static bool IsDetachedExecStart(string path, byte[] body)
    {
        if (!path.EndsWith("/start", StringComparison.Ordinal) || body.Length == 0) return false;
        try
        {
            using var json = System.Text.Json.JsonDocument.Parse(body);
            return json.RootElement.ValueKind == System.Text.Json.JsonValueKind.Object &&
                json.RootElement.TryGetProperty("Detach", out var d) && d.ValueKind == System.Text.Json.JsonValueKind.True;
        }
        catch (System.Text.Json.JsonException)
        {
            return false;
        }
    }
}
