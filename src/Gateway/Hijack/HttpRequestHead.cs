using System.Buffers;
using System.Text;

namespace Flotilla.Gateway.Hijack;

/// <summary>The request line and headers of one HTTP/1.1 request, parsed from raw bytes.</summary>
public sealed class HttpRequestHead
{
    public const int MaxHeadBytes = 64 * 1024;

    private HttpRequestHead(string method, string target, Dictionary<string, string> headers)
    {
        Method = method;
        Target = target;
        Headers = headers;
        var q = target.IndexOf('?');
        Path = q < 0 ? target : target[..q];
        QueryString = q < 0 ? "" : target[(q + 1)..];
    }

    /// <summary>A head that Kestrel already parsed (a hijacked request on a reused connection).</summary>
    public static HttpRequestHead Of(string method, string target, IEnumerable<KeyValuePair<string, string>> headers)
    {
        var map = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var (name, value) in headers) map[name] = value;
        return new HttpRequestHead(method, target, map);
    }

    public string Method { get; }
    public string Target { get; }
    public string Path { get; }
    public string QueryString { get; }
    public IReadOnlyDictionary<string, string> Headers { get; }

    public string? Header(string name) => Headers.TryGetValue(name, out var v) ? v : null;

    public bool WantsUpgrade =>
        (Header("Connection")?.Contains("upgrade", StringComparison.OrdinalIgnoreCase) ?? false) &&
        string.Equals(Header("Upgrade")?.Trim(), "tcp", StringComparison.OrdinalIgnoreCase);

    public bool IsChunked => Header("Transfer-Encoding")?.Contains("chunked", StringComparison.OrdinalIgnoreCase) ?? false;

    public long? ContentLength => long.TryParse(Header("Content-Length"), out var n) && n >= 0 ? n : null;

    public IReadOnlyDictionary<string, string> Query()
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in QueryString.Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = pair.IndexOf('=');
            var key = Uri.UnescapeDataString((eq < 0 ? pair : pair[..eq]).Replace('+', ' '));
            var value = eq < 0 ? "" : Uri.UnescapeDataString(pair[(eq + 1)..].Replace('+', ' '));
            result[key] = value;
        }
        return result;
    }

    /// <summary>
    /// Finds a complete head at the start of the buffer. Returns false while more bytes are needed;
    /// throws <see cref="FormatException"/> for a head that is not HTTP/1.x.
    /// </summary>
    public static bool TryParse(ReadOnlySequence<byte> buffer, out HttpRequestHead? head, out SequencePosition end)
    {
        head = null;
        end = buffer.Start;
        // Lines end in CRLF, or a bare LF as Go's server tolerates (Docker.DotNet's ManagedHandler sends those).
        var scan = buffer.Length > MaxHeadBytes + 4 ? buffer.Slice(0, MaxHeadBytes + 4).ToArray() : buffer.ToArray();
        var headLength = -1;
        var consumed = 0;
        var lineStart = 0;
        for (var i = 0; i < scan.Length; i++)
        {
            if (scan[i] != (byte)'\n') continue;
            var lineEnd = i > lineStart && scan[i - 1] == (byte)'\r' ? i - 1 : i;
            if (lineEnd == lineStart && lineStart > 0)
            {
                headLength = lineStart;
                consumed = i + 1;
                break;
            }
            lineStart = i + 1;
        }
        if (headLength < 0)
        {
            if (buffer.Length > MaxHeadBytes) throw new FormatException("request head too large");
            return false;
        }
        if (headLength > MaxHeadBytes) throw new FormatException("request head too large");
        end = buffer.GetPosition(consumed);

        var text = Encoding.Latin1.GetString(scan, 0, headLength);
        var lines = text.Split('\n').Select(l => l.TrimEnd('\r')).Where(l => l.Length > 0).ToArray();
        var requestLine = lines[0].Split(' ');
        if (requestLine.Length != 3 || !requestLine[2].StartsWith("HTTP/1.", StringComparison.Ordinal))
            throw new FormatException("malformed request line");
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var line in lines.Skip(1))
        {
            var colon = line.IndexOf(':');
            if (colon <= 0) throw new FormatException("malformed header line");
            var name = line[..colon].Trim();
            var value = line[(colon + 1)..].Trim();
            headers[name] = headers.TryGetValue(name, out var existing) ? existing + ", " + value : value;
        }
        head = new HttpRequestHead(requestLine[0], requestLine[1], headers);
        return true;
    }

    /// <summary>The request line alone, for an early decision: method and path, or null if not yet complete.</summary>
    public static (string Method, string Path)? PeekRequestLine(ReadOnlySequence<byte> buffer)
    {
        var reader = new SequenceReader<byte>(buffer);
        if (!reader.TryReadTo(out ReadOnlySequence<byte> line, "\r\n"u8, advancePastDelimiter: false))
            return null;
        var parts = Encoding.Latin1.GetString(line.Length > 8192 ? line.Slice(0, 8192) : line).Split(' ');
        if (parts.Length < 2) return ("", "");
        var q = parts[1].IndexOf('?');
        return (parts[0], q < 0 ? parts[1] : parts[1][..q]);
    }
}
