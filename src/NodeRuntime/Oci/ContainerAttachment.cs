using System.Net.Sockets;

namespace Flotilla.NodeRuntime.Oci;

/// <summary>Which stream a piece of container output came from.</summary>
public enum StdStream : byte
{
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
}

/// <summary>One packet of live output; with a TTY everything arrives as <see cref="StdStream.Stdout"/>.</summary>
public readonly record struct AttachFrame(StdStream Stream, ReadOnlyMemory<byte> Data);

/// <summary>
/// A client of conmon's attach socket (AF_UNIX SOCK_SEQPACKET, <c>&lt;socket-dir&gt;/&lt;id&gt;/attach</c>).
/// conmon → client packets start with a stream byte (2 = stdout, 3 = stderr); client → conmon packets are raw
/// stdin bytes (conmon needs <c>-i</c>); shutting down the write side closes the container's stdin. Only live
/// output is delivered: attach before <c>runc start</c> to see everything (history is in the log).
/// </summary>
public sealed class ContainerAttachment : IAsyncDisposable, IDisposable
{
    private const int MaxPacket = 8193;
    private readonly Socket _socket;

    private ContainerAttachment(Socket socket) => _socket = socket;

    /// <summary>
    /// Connects to <paramref name="socketPath"/>. The path is reached through <c>/proc/self/fd/&lt;dirfd&gt;</c>
    /// so it may be longer than sun_path's 108 bytes.
    /// </summary>
    public static async Task<ContainerAttachment> ConnectAsync(string socketPath, CancellationToken cancellationToken = default)
    {
        var dirFd = Native.OpenPath(Path.GetDirectoryName(socketPath)!);
        var socket = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint($"/proc/self/fd/{dirFd}/{Path.GetFileName(socketPath)}"), cancellationToken);
            return new ContainerAttachment(socket);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        finally
        {
            Native.Close(dirFd);
        }
    }

    /// <summary>The next packet of output, or null once conmon closed the socket (the container exited).</summary>
    public async Task<AttachFrame?> ReadAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            var buffer = new byte[MaxPacket];
            var n = await _socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken);
            if (n == 0) return null;
            if (n == 1) continue;
            var stream = buffer[0] switch
            {
                2 => StdStream.Stdout,
                3 => StdStream.Stderr,
                _ => StdStream.Stdout,
            };
            return new AttachFrame(stream, buffer.AsMemory(1, n - 1));
        }
    }

    /// <summary>Every packet until the container's output ends.</summary>
    public async IAsyncEnumerable<AttachFrame> ReadAllAsync([System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        while (await ReadAsync(cancellationToken) is { } frame) yield return frame;
    }

    /// <summary>Sends bytes to the container's stdin (split into packets conmon accepts).</summary>
    public async Task WriteStdinAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        while (data.Length > 0)
        {
            var chunk = data[..Math.Min(data.Length, MaxPacket - 1)];
            var sent = await _socket.SendAsync(chunk, SocketFlags.None, cancellationToken);
            data = data[sent..];
        }
    }

    /// <summary>Closes the container's stdin (EOF for the reader inside); output keeps flowing.</summary>
    public void CloseStdin() => _socket.Shutdown(SocketShutdown.Send);

    public void Dispose() => _socket.Dispose();

    public ValueTask DisposeAsync()
    {
        _socket.Dispose();
        return ValueTask.CompletedTask;
    }
}
