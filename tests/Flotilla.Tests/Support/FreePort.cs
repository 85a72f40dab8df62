using System.Net;
using System.Net.Sockets;

namespace Flotilla.Tests.Support;

public static class FreePort
{
    // Below the kernel's ephemeral range (32768-60999 by default): a port the kernel hands out for port 0 can be taken
    // again, before the test binds it, as the source port of any outgoing connection (a full run once failed to bind
    // 127.0.0.1:33201 that way). Ports from here are never chosen as source ports, and each is handed out once per
    // test process.
    private const int First = 20000;
    private const int Count = 12000;
    private static int _next = Random.Shared.Next(Count);

    /// <summary>A loopback TCP port that is free now, outside the ephemeral range, not handed out before by this process.</summary>
    public static int Next()
    {
        for (var attempt = 0; attempt < Count; attempt++)
        {
            var port = First + (int)((uint)Interlocked.Increment(ref _next) % Count);
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
        throw new InvalidOperationException($"no free loopback port in {First}-{First + Count - 1}");
    }
}
