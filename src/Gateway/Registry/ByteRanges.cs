namespace Flotilla.Gateway.Registry;

/// <summary>The two range headers of the registry protocol.</summary>
public static class ByteRanges
{
    /// <summary>
    /// <c>Content-Range</c> of a chunk upload: <c>&lt;start&gt;-&lt;end&gt;</c>, inclusive, no unit (the spec's
    /// grammar); <c>bytes </c>/<c>bytes=</c> prefixes some clients send are tolerated.
    /// </summary>
    public static bool TryParseChunk(string? header, out long start, out long end)
    {
        start = end = 0;
        if (string.IsNullOrWhiteSpace(header)) return false;
        var s = header.Trim();
        if (s.StartsWith("bytes", StringComparison.OrdinalIgnoreCase)) s = s[5..].TrimStart(' ', '=');
        var slash = s.IndexOf('/');
        if (slash >= 0) s = s[..slash];
        var dash = s.IndexOf('-');
        return dash > 0 && IsDigits(s[..dash]) && IsDigits(s[(dash + 1)..])
            && long.TryParse(s[..dash], out start) && long.TryParse(s[(dash + 1)..], out end) && end >= start;
    }

    /// <summary>
    /// RFC 9110 <c>Range: bytes=a-b | a- | -n</c> against a blob of <paramref name="size"/> bytes. Returns
    /// false for a header we do not honour (several ranges, other units): the whole blob is served.
    /// <paramref name="satisfiable"/> is false when the range lies outside the blob (416).
    /// </summary>
    public static bool TryParseRequest(string? header, long size, out long offset, out long length, out bool satisfiable)
    {
        offset = length = 0;
        satisfiable = true;
        if (string.IsNullOrWhiteSpace(header)) return false;
        var s = header.Trim();
        if (!s.StartsWith("bytes=", StringComparison.OrdinalIgnoreCase)) return false;
        s = s[6..].Trim();
        if (s.Contains(',')) return false;
        var dash = s.IndexOf('-');
        if (dash < 0) return false;
        var first = s[..dash].Trim();
        var last = s[(dash + 1)..].Trim();
        if (first.Length == 0)
        {
            if (!IsDigits(last) || !long.TryParse(last, out var suffix)) return false;
            if (suffix == 0 || size == 0) { satisfiable = false; return true; }
            length = Math.Min(suffix, size);
            offset = size - length;
            return true;
        }
        if (!IsDigits(first) || !long.TryParse(first, out var from)) return false;
        long to = size - 1;
        if (last.Length > 0)
        {
            if (!IsDigits(last) || !long.TryParse(last, out to) || to < from) return false;
            to = Math.Min(to, size - 1);
        }
        if (from >= size) { satisfiable = false; return true; }
        offset = from;
        length = to - from + 1;
        return true;
    }

    private static bool IsDigits(string s) => s.Length is > 0 and <= 19 && s.All(char.IsAsciiDigit);
}
