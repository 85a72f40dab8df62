using System.Globalization;

namespace Flotilla.Cluster.Audit;

/// <summary>
/// Time bounds as docker's <c>--since</c>/<c>--until</c> take them: unix seconds (with an optional
/// fraction), RFC 3339 / ISO 8601 date-times (no zone = local time), or a Go duration before now (<c>10m</c>, <c>1h30m</c>).
/// </summary>
public static class AuditTime
{
    public static DateTimeOffset Parse(string text, DateTimeOffset now) =>
        TryParse(text, now, out var value) ? value : throw new FormatException($"invalid time value: '{text}' (use unix seconds, RFC 3339 or a duration like 10m)");

    public static bool TryParse(string? text, DateTimeOffset now, out DateTimeOffset value)
    {
        value = default;
        if (string.IsNullOrWhiteSpace(text)) return false;
        text = text.Trim();
        if (TryParseDuration(text, out var ago))
        {
            value = now - ago;
            return true;
        }
        if (text.All(c => char.IsAsciiDigit(c) || c == '.') && text.Count(c => c == '.') <= 1 && text[0] != '.')
        {
            var dot = text.IndexOf('.');
            var fraction = dot < 0 ? "" : text[(dot + 1)..];
            if (!long.TryParse(dot < 0 ? text : text[..dot], CultureInfo.InvariantCulture, out var seconds) || fraction.Length > 9 ||
                seconds > 253402300799) return false;
            var ticks = fraction.Length == 0 ? 0 : long.Parse(fraction.PadRight(9, '0'), CultureInfo.InvariantCulture) / 100;
            value = DateTimeOffset.UnixEpoch.AddSeconds(seconds).AddTicks(ticks);
            return true;
        }
        return DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeLocal | DateTimeStyles.AllowWhiteSpaces, out value)
               && text.Contains('-');
    }

    /// <summary>Go's <c>time.ParseDuration</c>: a sequence of decimal numbers with units ns, us, µs, ms, s, m, h.</summary>
    public static bool TryParseDuration(string text, out TimeSpan duration)
    {
        duration = default;
        if (text.Length == 0) return false;
        var i = 0;
        var negative = false;
        if (text[0] is '+' or '-')
        {
            negative = text[0] == '-';
            i = 1;
        }
        if (i == text.Length) return false;
        double ticks = 0;
        while (i < text.Length)
        {
            var start = i;
            while (i < text.Length && (char.IsAsciiDigit(text[i]) || text[i] == '.')) i++;
            if (i == start || !double.TryParse(text[start..i], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number)) return false;
            var unitStart = i;
            while (i < text.Length && !char.IsAsciiDigit(text[i]) && text[i] != '.') i++;
            double? perUnit = text[unitStart..i] switch
            {
                "ns" => 0.01,
                "us" or "µs" or "μs" => 10,
                "ms" => TimeSpan.TicksPerMillisecond,
                "s" => TimeSpan.TicksPerSecond,
                "m" => TimeSpan.TicksPerMinute,
                "h" => TimeSpan.TicksPerHour,
                _ => null,
            };
            if (perUnit is not { } unit) return false;
            ticks += number * unit;
        }
        if (ticks > TimeSpan.MaxValue.Ticks) return false;
        duration = TimeSpan.FromTicks((long)(negative ? -ticks : ticks));
        return true;
    }
}
