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

    // Below the kernel's ephemeral range (32768-60999 by default), each handed out once: a port found free with port 0
    // can be taken, before the server binds it, as some outgoing connection's source port (as the tests' FreePort saw).
    private const int FirstPort = 20000;
    private const int PortCount = 12000;
    private static int _nextPort = Random.Shared.Next(PortCount);

    /// <summary>A loopback TCP port that is free now, outside the ephemeral range, not handed out before by this process.</summary>
    public static int FreePort()
    {
        for (var attempt = 0; attempt < PortCount; attempt++)
        {
            var port = FirstPort + (int)((uint)Interlocked.Increment(ref _nextPort) % PortCount);
            try
            {
                using var listener = new TcpListener(IPAddress.Loopback, port);
                listener.Start();
                return port;
            }
            catch (SocketException)
            {
                // In use: the next one.
            }
        }
        throw new InvalidOperationException($"no free loopback port in {FirstPort}-{FirstPort + PortCount - 1}");
    }

    public static string LoadAverage()
    {
        try { return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return "?"; }
    }
}
