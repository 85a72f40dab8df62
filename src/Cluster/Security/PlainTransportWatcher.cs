using System.Net;
using Akka.Actor;
using Akka.Event;
using DotNetty.Handlers.Tls;
using Flotilla.Contracts.Security;

namespace Flotilla.Cluster.Security;

/// <summary>
/// Records plain-TCP attempts on the TLS cluster port. Akka.Remote's DotNetty transport refuses them in its TLS handler
/// (<see cref="NotSslRecordException"/>) before any certificate is seen, so <see cref="ClusterTls"/>'s validator never
/// hears of them; the transport only logs the failure, with the channel's addresses as parameters. This actor, subscribed
/// to the system's <see cref="Error"/> events, hands each refused connection (once per channel) to <see cref="ClusterAccessLog"/>.
/// </summary>
public sealed class PlainTransportWatcher : ReceiveActor
{
    public const string Reason = "not a TLS handshake (plain TCP)";
    private const int RememberedChannels = 256;

    // The transport logs one failure more than once (the handler's error and the handshake's); the channel id tells them apart.
    private readonly Queue<string> _order = new();
    private readonly HashSet<string> _seen = [];

    public PlainTransportWatcher(ClusterAccessLog access)
    {
        Receive<Error>(e =>
        {
            if (!IsPlainTcp(e.Cause) || e.Message is not LogMessage message) return;
            var parameters = message.Parameters().ToArray();
            // "[local->remote](Id=channel)": the second endpoint is the peer's.
            if (parameters.OfType<IPEndPoint>().Skip(1).FirstOrDefault() is not { } remote) return;
            var channel = parameters.Length > 2 ? parameters[2]?.ToString() ?? "" : remote.ToString();
            if (!_seen.Add(channel)) return;
            _order.Enqueue(channel);
            if (_order.Count > RememberedChannels) _seen.Remove(_order.Dequeue());
            var address = remote.Address.IsIPv4MappedToIPv6 ? remote.Address.MapToIPv4() : remote.Address;
            access.Refused(ClusterSurfaces.Transport, address.ToString(), null, Reason);
        });
    }

    private static bool IsPlainTcp(Exception? cause)
    {
        for (var e = cause; e is not null; e = e.InnerException)
            if (e is NotSslRecordException) return true;
        return false;
    }
}
