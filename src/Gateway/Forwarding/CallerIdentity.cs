using System.Net;
using Flotilla.Cluster.Security;
using Flotilla.Contracts.Security;

namespace Flotilla.Gateway.Forwarding;

/// <summary>
/// Who a Docker API request comes from, for the audit trail. The Docker API has no login of its own, so the caller is
/// named by the address it connects from (<c>anonymous@10.0.0.7</c>). A request a gateway forwarded to a container's
/// node arrives from the gateway, so the gateway names the original caller in <see cref="ForwardedForHeader"/>; the
/// node believes that header only from a connection authenticated with a gateway certificate of the cluster CA (its
/// cluster-only API), never from an address alone: on <c>flotilla up</c> every local process shares the loopback
/// address a cluster process registers. A header it does not believe is ignored and recorded.
/// </summary>
public sealed class CallerIdentity(ClusterAccessLog? access = null)
{
    /// <summary>The caller as the forwarding gateway saw it (the value is an audit user name).</summary>
    public const string ForwardedForHeader = "X-Flotilla-Forwarded-For";

    public const int MaxUserLength = 200;

    /// <summary>The name of a caller connecting from <paramref name="remote"/> itself.</summary>
    public static string Direct(IPAddress? remote) => remote is null ? "anonymous@local" : $"anonymous@{Normalize(remote)}";

    /// <summary>
    /// The caller of a request from <paramref name="remote"/>: the forwarded caller when an authenticated gateway
    /// (<paramref name="peer"/>, from its client certificate) forwarded it with both headers and a well-formed name,
    /// else the direct caller.
    /// </summary>
    public string Resolve(IPAddress? remote, ClusterPeer? peer, string? forwardedBy, string? forwardedFor)
    {
        var direct = Direct(remote);
        if (forwardedFor is null) return direct;
        if (peer is { Role: ClusterRole.Gateway } && !string.IsNullOrEmpty(forwardedBy) && IsWellFormed(forwardedFor)) return forwardedFor;
        var reason = peer is null
            ? $"{ForwardedForHeader} from a caller without a gateway certificate of this cluster: ignored"
            : peer.Role != ClusterRole.Gateway
                ? $"{ForwardedForHeader} from {ClusterCa.RoleName(peer.Role)} {peer.Name}, not a gateway: ignored"
                : $"{ForwardedForHeader} without X-Flotilla-Forwarded-By or not a storable name: ignored";
        access?.Refused(ClusterSurfaces.ForwardedIdentity, remote is null ? "local" : Normalize(remote).ToString(), peer?.Subject, reason);
        return direct;
    }

    /// <summary>
    /// Whether a request carrying the forwarded-by header comes from an authenticated gateway (<paramref name="peer"/>,
    /// from its client certificate): the same trust <see cref="Resolve"/> gives the forwarded caller, for the forwarded
    /// correlation id.
    /// </summary>
    public static bool IsForwardedByGateway(ClusterPeer? peer, string? forwardedBy) =>
        peer is { Role: ClusterRole.Gateway } && !string.IsNullOrEmpty(forwardedBy);

    /// <summary>A user name as the audit trail stores it: printable, no spaces or separators a log line could be split on.</summary>
    public static bool IsWellFormed(string? user) =>
        !string.IsNullOrEmpty(user) && user.Length <= MaxUserLength && user.All(c => c > ' ' && c < 0x7f && c != ',' && c != ';');

    private static IPAddress Normalize(IPAddress ip) => ip.IsIPv4MappedToIPv6 ? ip.MapToIPv4() : ip;
}
