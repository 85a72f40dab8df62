using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using Flotilla.Gateway.Hijack;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Flotilla.Tests.Gateway;

/// <summary>
/// A hijack handler that echoes stdin as stdout frames and ends with a stderr line: enough to prove
/// the transport (handshake, body vs stdin split, half-close, frames, lingering close) byte for byte.
/// </summary>
public sealed class EchoHijackHandler : IHijackHandler
{
    public bool Matches(string path) => path.StartsWith("/exec/echo", StringComparison.Ordinal);

    public async Task HandleAsync(HijackedStream stream, string path, CancellationToken cancellationToken)
    {
        var tty = Encoding.UTF8.GetString(stream.Body.Span).Contains("\"Tty\":true");
        await stream.AcceptAsync(tty);
        await stream.WriteFrameAsync(StdStream.Stdout, Encoding.UTF8.GetBytes($"body={Encoding.UTF8.GetString(stream.Body.Span)}\n"));
        while (true)
        {
            var result = await stream.Stdin.ReadAsync(cancellationToken);
            foreach (var segment in result.Buffer)
                if (tty) await stream.WriteRawAsync(segment.ToArray());
                else await stream.WriteFrameAsync(StdStream.Stdout, segment.ToArray());
            stream.Stdin.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted) break;
        }
        if (!tty) await stream.WriteFrameAsync(StdStream.Stderr, "stdin closed\n"u8.ToArray());
    }
}

/// <summary>A handler with a bug: its exception's text must stay in the server log.</summary>
public sealed class FailingHijackHandler : IHijackHandler
{
    public const string Secret = "secret detail /var/lib/flotilla/internal";

    public bool Matches(string path) => path.StartsWith("/exec/boom", StringComparison.Ordinal);

    public Task HandleAsync(HijackedStream stream, string path, CancellationToken cancellationToken) =>
        throw new InvalidOperationException(Secret);
}

public sealed class FlotillaWithEcho : RunningFlotilla
{
    protected override void ConfigureServices(IServiceCollection services)
    {
        services.AddSingleton<IHijackHandler, EchoHijackHandler>();
        services.AddSingleton<IHijackHandler, FailingHijackHandler>();
    }
}

public class HijackSpec(FlotillaWithEcho flotilla) : IClassFixture<FlotillaWithEcho>
{
    private async Task<NetworkStream> ConnectAsync()
    {
        var client = new TcpClient();
        await client.ConnectAsync("127.0.0.1", flotilla.DockerPort);
        return client.GetStream();
    }

    private static async Task<byte[]> ReadToEndAsync(Stream stream)
    {
        using var ms = new MemoryStream();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await stream.CopyToAsync(ms, cts.Token);
        return ms.ToArray();
    }

    /// <summary>Splits a response into its head and the stdcopy frames after it.</summary>
    private static (string Head, List<(byte Stream, string Text)> Frames) Parse(byte[] response)
    {
        var text = Encoding.Latin1.GetString(response);
        var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        Assert.True(end > 0, $"no response head in: {text}");
        var frames = new List<(byte, string)>();
        var i = end + 4;
        while (i + 8 <= response.Length)
        {
            var length = (int)BinaryPrimitives.ReadUInt32BigEndian(response.AsSpan(i + 4));
            frames.Add((response[i], Encoding.UTF8.GetString(response, i + 8, length)));
            i += 8 + length;
        }
        Assert.Equal(response.Length, i);
        return (text[..end], frames);
    }

    [Fact]
    public async Task Exec_start_with_a_body_is_upgraded_and_stdin_after_the_body_comes_back_framed()
    {
        await using var stream = await ConnectAsync();
        const string body = "{\"Detach\":false,\"Tty\":false}";
        var request = "POST /v1.50/exec/echo1/start HTTP/1.1\r\nHost: api.moby.localhost\r\nContent-Type: application/json\r\n" +
            $"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: {body.Length}\r\n\r\n{body}hello ";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(request));
        await stream.WriteAsync("world"u8.ToArray());
        await Task.Delay(100);
        stream.Socket.Shutdown(SocketShutdown.Send);

        var (head, frames) = Parse(await ReadToEndAsync(stream));
        Assert.StartsWith("HTTP/1.1 101 UPGRADED", head);
        Assert.Contains("Content-Type: application/vnd.docker.multiplexed-stream", head);
        Assert.Contains("Upgrade: tcp", head);
        Assert.Equal((byte)1, frames[0].Stream);
        Assert.Equal($"body={body}\n", frames[0].Text);
        Assert.Equal("hello world", string.Concat(frames.Skip(1).Where(f => f.Stream == 1).Select(f => f.Text)));
        Assert.Equal(((byte)2, "stdin closed\n"), frames[^1]);
    }

    [Fact]
    public async Task An_unexpected_failure_answers_a_request_id_not_the_exception_text()
    {
        await using var stream = await ConnectAsync();
        await stream.WriteAsync("POST /exec/boom1/start HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"u8.ToArray());
        var text = Encoding.UTF8.GetString(await ReadToEndAsync(stream));
        Assert.StartsWith("HTTP/1.1 500", text);
        Assert.Contains("internal error (request ", text);
        Assert.DoesNotContain(FailingHijackHandler.Secret, text);
    }

    [Fact]
    public async Task A_megabyte_of_stdin_comes_back_whole()
    {
        await using var stream = await ConnectAsync();
        var request = "POST /exec/echo2/start HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(request));
        var payload = new byte[1 << 20];
        new Random(7).NextBytes(payload);
        for (var i = 0; i < payload.Length; i++) payload[i] = (byte)('a' + payload[i] % 26);
        var reading = ReadToEndAsync(stream);
        await stream.WriteAsync(payload);
        stream.Socket.Shutdown(SocketShutdown.Send);

        var (_, frames) = Parse(await reading);
        var echoed = string.Concat(frames.Skip(1).Where(f => f.Stream == 1).Select(f => f.Text));
        Assert.Equal(Encoding.ASCII.GetString(payload), echoed);
    }

    [Fact]
    public async Task Chunked_bodies_are_read_exactly()
    {
        await using var stream = await ConnectAsync();
        var request = "POST /exec/echo3/start HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
            "4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\nstdin";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(request));
        stream.Socket.Shutdown(SocketShutdown.Send);
        var (_, frames) = Parse(await ReadToEndAsync(stream));
        Assert.Equal("body={\"a\":1}\n", frames[0].Text);
        Assert.Equal("stdin", frames[1].Text);
    }

    [Fact]
    public async Task Without_upgrade_headers_the_legacy_200_raw_stream_is_used_and_tty_is_not_framed()
    {
        await using var stream = await ConnectAsync();
        const string body = "{\"Tty\":true}";
        var request = $"POST /v1.41/exec/echo4/start HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {body.Length}\r\n\r\n{body}raw!";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(request));
        stream.Socket.Shutdown(SocketShutdown.Send);
        var text = Encoding.Latin1.GetString(await ReadToEndAsync(stream));
        Assert.StartsWith("HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n", text);
        Assert.EndsWith("raw!", text);
    }

    [Fact]
    public async Task A_post_that_is_no_hijack_target_falls_through_to_dockers_404()
    {
        await using var stream = await ConnectAsync();
        await stream.WriteAsync("POST /exec/nope/resume HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"u8.ToArray());
        var text = Encoding.UTF8.GetString(await ReadToEndAsync(stream));
        Assert.StartsWith("HTTP/1.1 404", text);
        Assert.Contains("Content-Type: application/json\r\n", text);
        Assert.Contains("{\"message\":\"page not found\"}", text);
    }

    [Fact]
    public async Task Attach_to_an_unknown_container_gets_dockers_404_before_the_upgrade()
    {
        await using var stream = await ConnectAsync();
        await stream.WriteAsync("POST /containers/nope/attach?stream=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"u8.ToArray());
        var text = Encoding.UTF8.GetString(await ReadToEndAsync(stream));
        Assert.StartsWith("HTTP/1.1 404", text);
        Assert.EndsWith("{\"message\":\"No such container: nope\"}", text);
    }

    [Fact]
    public async Task A_head_with_bare_line_feeds_is_hijacked_as_docker_dotnet_sends_it()
    {
        await using var stream = await ConnectAsync();
        await stream.WriteAsync("POST /exec/echo1/start HTTP/1.1\r\nHost: 127.0.0.1\nConnection: close\nContent-Type: application/json\nContent-Length: 2\n\r\n{}"u8.ToArray());
        stream.Socket.Shutdown(SocketShutdown.Send);
        var (head, frames) = Parse(await ReadToEndAsync(stream));
        Assert.StartsWith("HTTP/1.1 200 OK", head);
        Assert.Equal((1, "body={}\n"), frames[0]);
    }

    [Fact]
    public async Task Ordinary_requests_pass_through_with_keep_alive_including_split_heads()
    {
        await using var stream = await ConnectAsync();
        // A head that arrives in two pieces, then a second request on the same connection.
        await stream.WriteAsync("GET /_pi"u8.ToArray());
        await Task.Delay(50);
        await stream.WriteAsync("ng HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"u8.ToArray());
        var buffer = new byte[4096];
        var first = Encoding.ASCII.GetString(buffer, 0, await stream.ReadAsync(buffer));
        Assert.StartsWith("HTTP/1.1 200 OK", first);
        Assert.EndsWith("OK", first);

        await stream.WriteAsync("GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"u8.ToArray());
        var second = Encoding.ASCII.GetString(buffer, 0, await stream.ReadAsync(buffer));
        Assert.StartsWith("HTTP/1.1 200 OK", second);
        Assert.Contains("Content-Type: application/json\r\n", second);
    }

    [Fact]
    public async Task A_post_that_is_not_a_hijack_is_served_by_kestrel()
    {
        using var response = await flotilla.Docker.PostAsync("v1.51/containers/abc/nothing", new StringContent("{}", System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(System.Net.HttpStatusCode.NotFound, response.StatusCode);
    }

    /// <summary>Reads one ordinary response (head and Content-Length body) and nothing more.</summary>
    private static async Task<string> ReadOneResponseAsync(Stream stream)
    {
        var bytes = new List<byte>();
        var one = new byte[1];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (!Encoding.Latin1.GetString(bytes.ToArray()).EndsWith("\r\n\r\n", StringComparison.Ordinal))
        {
            Assert.Equal(1, await stream.ReadAsync(one, cts.Token));
            bytes.Add(one[0]);
        }
        var head = Encoding.Latin1.GetString(bytes.ToArray());
        var lengthLine = head.Split("\r\n").SingleOrDefault(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase));
        if (lengthLine is null)
        {
            // Chunked: up to the last chunk (the bodies here hold no "0\r\n\r\n" of their own).
            while (!Encoding.Latin1.GetString(bytes.ToArray()).EndsWith("\r\n0\r\n\r\n", StringComparison.Ordinal))
            {
                Assert.Equal(1, await stream.ReadAsync(one, cts.Token));
                bytes.Add(one[0]);
            }
            return Encoding.UTF8.GetString(bytes.ToArray());
        }
        var body = new byte[int.Parse(lengthLine["Content-Length:".Length..].Trim())];
        await stream.ReadExactlyAsync(body, cts.Token);
        return head + Encoding.UTF8.GetString(body);
    }

    private static string ExecStartRequest(string id, string body) =>
        $"POST /v1.51/exec/{id}/start HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
        $"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: {body.Length}\r\n\r\n{body}";

    private static async Task AssertEchoedAsync(Stream stream, string body, string stdin)
    {
        var (head, frames) = Parse(await ReadToEndAsync(stream));
        Assert.StartsWith("HTTP/1.1 101 UPGRADED", head);
        Assert.Equal($"body={body}\n", frames[0].Text);
        Assert.Equal(stdin, string.Concat(frames.Skip(1).Where(f => f.Stream == 1).Select(f => f.Text)));
        Assert.Equal(((byte)2, "stdin closed\n"), frames[^1]);
    }

    [Fact]
    public async Task Exec_start_after_other_requests_on_the_same_connection_is_upgraded()
    {
        await using var stream = await ConnectAsync();
        await stream.WriteAsync("GET /_ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"u8.ToArray());
        Assert.EndsWith("OK", await ReadOneResponseAsync(stream));
        await stream.WriteAsync("GET /v1.51/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"u8.ToArray());
        Assert.Contains("\"ApiVersion\"", await ReadOneResponseAsync(stream));

        const string body = "{\"Detach\":false,\"Tty\":false}";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(ExecStartRequest("echo-reused", body) + "in one "));
        await Task.Delay(100);
        await stream.WriteAsync("piece"u8.ToArray());
        await Task.Delay(100);
        stream.Socket.Shutdown(SocketShutdown.Send);
        await AssertEchoedAsync(stream, body, "in one piece");
    }

    [Fact]
    public async Task Pipelined_requests_then_an_exec_start_with_its_stdin_in_one_write_are_answered_in_order()
    {
        await using var stream = await ConnectAsync();
        const string body = "{}";
        var all = "GET /_ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" +
            "POST /v1.51/containers/abc/nothing HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}" +
            ExecStartRequest("echo-pipelined", body) + "stdin already buffered";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(all));
        var ping = await ReadOneResponseAsync(stream);
        Assert.StartsWith("HTTP/1.1 200 OK", ping);
        Assert.StartsWith("HTTP/1.1 404", await ReadOneResponseAsync(stream));
        await Task.Delay(100);
        stream.Socket.Shutdown(SocketShutdown.Send);
        await AssertEchoedAsync(stream, body, "stdin already buffered");
    }

    [Fact]
    public async Task Exec_start_on_a_reused_unix_socket_connection_is_upgraded()
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(flotilla.DockerSocket));
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        await stream.WriteAsync("GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n"u8.ToArray());
        Assert.EndsWith("OK", await ReadOneResponseAsync(stream));
        await stream.WriteAsync(Encoding.ASCII.GetBytes(ExecStartRequest("echo-unix", "{}") + "over the socket"));
        await Task.Delay(100);
        socket.Shutdown(SocketShutdown.Send);
        await AssertEchoedAsync(stream, "{}", "over the socket");
    }

    [Fact]
    public async Task Attach_on_a_reused_connection_reaches_the_attach_handler()
    {
        await using var stream = await ConnectAsync();
        await stream.WriteAsync("GET /_ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"u8.ToArray());
        Assert.EndsWith("OK", await ReadOneResponseAsync(stream));
        await stream.WriteAsync("POST /v1.51/containers/nope/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"u8.ToArray());
        var text = Encoding.UTF8.GetString(await ReadToEndAsync(stream));
        Assert.StartsWith("HTTP/1.1 404", text);
        Assert.EndsWith("{\"message\":\"No such container: nope\"}", text);
    }

    [Fact]
    public async Task A_detached_exec_start_on_a_reused_connection_stays_an_ordinary_request()
    {
        // Detach: no stream, so Kestrel answers and the connection stays open for the next request.
        await using var stream = await ConnectAsync();
        await stream.WriteAsync("GET /_ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"u8.ToArray());
        Assert.EndsWith("OK", await ReadOneResponseAsync(stream));
        const string body = "{\"Detach\":true}";
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"POST /v1.51/exec/nope/start HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {body.Length}\r\n\r\n{body}"));
        Assert.StartsWith("HTTP/1.1 404", await ReadOneResponseAsync(stream));
        await stream.WriteAsync("GET /_ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"u8.ToArray());
        Assert.EndsWith("OK", await ReadOneResponseAsync(stream));
    }
}
