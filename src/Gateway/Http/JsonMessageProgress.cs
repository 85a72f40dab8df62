using System.Globalization;
using Flotilla.NodeRuntime.Distribution;

namespace Flotilla.Gateway.Http;

/// <summary>Pull/push progress as Docker's JSON message lines, with the preformatted bar older clients print.</summary>
public sealed class JsonMessageProgress(JsonMessageStream stream) : IDistributionProgress
{
    public Task ReportAsync(string status, string? id = null, long? current = null, long? total = null) =>
        current is { } c
            ? stream.StatusAsync(status, id, new ProgressDetail(c, total), Bar(c, total))
            : stream.StatusAsync(status, id, new ProgressDetail(null, null));

    /// <summary>moby's <c>JSONProgress.String</c>: <c>[=====&gt;    ]  1.2MB/3.4MB</c>.</summary>
    public static string Bar(long current, long? total)
    {
        if (total is not { } t || t <= 0) return Size(current);
        var width = 50;
        var filled = (int)Math.Min(width, current * width / t);
        var bar = filled >= width ? new string('=', width) : new string('=', filled) + ">" + new string(' ', width - filled - 1);
        return $"[{bar}] {Size(current),8}/{Size(t)}";
    }

    private static string Size(long bytes)
    {
        string[] units = ["B", "kB", "MB", "GB", "TB"];
        double value = bytes;
        var unit = 0;
        while (value >= 1000 && unit < units.Length - 1)
        {
            value /= 1000;
            unit++;
        }
        return unit == 0 ? $"{bytes}B" : value.ToString("0.###", CultureInfo.InvariantCulture) + units[unit];
    }
}
