using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace Flotilla.NodeRuntime.Oci;

/// <summary>
/// Docker's multiplexed stream format (moby <c>pkg/stdcopy</c>) used by logs/attach/exec without a TTY: an 8-byte
/// header — stream type (0 stdin, 1 stdout, 2 stderr), three zero bytes, big-endian uint32 payload length — then
/// the payload. With a TTY Docker sends raw bytes, no headers. <c>timestamps=1</c> prefixes each line with an
/// RFC3339Nano time (fixed nine digits, UTC) and a space, inside the payload.
/// </summary>
public static class DockerLogFrame
{
    public const int HeaderLength = 8;

    public static void WriteHeader(Span<byte> header, StdStream stream, int length)
    {
        header[0] = (byte)stream;
        header[1] = header[2] = header[3] = 0;
        BinaryPrimitives.WriteUInt32BigEndian(header[4..], (uint)length);
    }

    public static async Task WriteAsync(Stream output, StdStream stream, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken = default)
    {
        var header = new byte[HeaderLength];
        WriteHeader(header, stream, payload.Length);
        await output.WriteAsync(header, cancellationToken);
        await output.WriteAsync(payload, cancellationToken);
    }

    /// <summary>Writes a log entry: framed (<paramref name="raw"/> false) or raw for TTY containers.</summary>
    public static async Task WriteEntryAsync(Stream output, LogEntry entry, bool timestamps, bool raw = false, CancellationToken cancellationToken = default)
    {
        ReadOnlyMemory<byte> payload = entry.Bytes;
        if (timestamps)
        {
            var prefix = Encoding.ASCII.GetBytes(FormatTimestamp(entry.Timestamp) + " ");
            var joined = new byte[prefix.Length + entry.Bytes.Length];
            prefix.CopyTo(joined, 0);
            entry.Bytes.CopyTo(joined, prefix.Length);
            payload = joined;
        }
        if (raw) await output.WriteAsync(payload, cancellationToken);
        else await WriteAsync(output, entry.Stream, payload, cancellationToken);
    }

    /// <summary>Docker's RFC3339NanoFixed in UTC: "2006-01-02T15:04:05.000000000Z".</summary>
    public static string FormatTimestamp(DateTimeOffset t) =>
        t.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff", CultureInfo.InvariantCulture) + "00Z";

    /// <summary>Reads frames until end of stream (what a Docker client does).</summary>
    public static async IAsyncEnumerable<(StdStream Stream, byte[] Payload)> ReadAsync(Stream input,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var header = new byte[HeaderLength];
        while (true)
        {
            try
            {
                await input.ReadExactlyAsync(header, cancellationToken);
            }
            catch (EndOfStreamException)
            {
                yield break;
            }
            var length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(4));
            var payload = new byte[length];
            await input.ReadExactlyAsync(payload, cancellationToken);
            yield return ((StdStream)header[0], payload);
        }
    }
}
