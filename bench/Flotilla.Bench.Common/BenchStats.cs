using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Flotilla.Bench.Common;

/// <summary>The small statistics and host facts every benchmark report prints.</summary>
public static class BenchStats
{
    public static string Samples(List<double> xs) => string.Join(" ", xs.Select(x => x.ToString("F3", CultureInfo.InvariantCulture)));

    public static double Median(List<double> xs)
    {
        var s = xs.Order().ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }

    /// <summary>Nearest-rank 90th percentile.</summary>
    public static double P90(List<double> xs)
    {
        var s = xs.Order().ToArray();
        return s[Math.Max(0, (int)Math.Ceiling(0.9 * s.Length) - 1)];
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public static string LoadAverage()
    {
        try { return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return "?"; }
    }
}
