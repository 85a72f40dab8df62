using System.Net;

namespace Flotilla.Cli.Hosting;

/// <summary>dockerd's warnings for a Docker API on TCP without verified client certificates, with its pauses.</summary>
public static class PlainTcpWarning
{
    public static async Task WarnAsync(IPEndPoint endpoint, bool plainExplicitly, CancellationToken cancellationToken)
    {
        var host = $"tcp://{endpoint}";
        Warn(host, "Binding to IP address without --tlsverify is insecure and gives root access on this machine to everyone who has access to your network.");
        Warn(host, "Binding to an IP address, even on localhost, can also give access to scripts run in a browser. Be safe out there!");
        await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
        // As dockerd: off loopback, and unless plain TCP was asked for in so many words, slow down to be read.
        if (plainExplicitly || IPAddress.IsLoopback(endpoint.Address)) return;
        Warn(host, "Binding to an IP address without --tlsverify is deprecated. Startup is intentionally being slowed down to show this message");
        Warn(host, "Please consider generating tls certificates with client validation to prevent exposing unauthenticated root access to your network");
        Warn(host, "You can override this by explicitly specifying '--tls=false' or '--tlsverify=false'");
        await Task.Delay(TimeSpan.FromSeconds(15), cancellationToken);
    }

    /// <summary>
    /// The native API and the registry carry bearer tokens and passwords: beyond loopback they are served in plain
    /// HTTP only when asked for in so many words (<c>--tls=false</c>), with a warning; otherwise a missing
    /// <c>--tlscert/--tlskey</c> there is a usage error (an <see cref="ArgumentException"/> naming the flag).
    /// </summary>
    public static void RequireTlsBeyondLoopback(IEnumerable<(string Flag, IPEndPoint? Endpoint)> listeners, bool tls, bool plainExplicitly)
    {
        if (tls) return;
        foreach (var (flag, endpoint) in listeners)
        {
            if (endpoint is null || IPAddress.IsLoopback(endpoint.Address)) continue;
            if (!plainExplicitly)
                throw new ArgumentException($"{flag} {endpoint} listens beyond loopback in plain HTTP, where tokens and passwords would cross the " +
                    "network in clear: give --tlscert/--tlskey, or --tls=false to mean plain HTTP");
            Warn($"http://{endpoint}", $"{flag} serves plain HTTP beyond loopback (--tls=false): tokens and passwords cross the network in clear.");
        }
    }

    private static void Warn(string host, string message) => Console.Error.WriteLine($"WARN {message}  host=\"{host}\"");
}
