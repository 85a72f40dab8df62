using System.Net;
using Flotilla.Cluster.Queries;

namespace Flotilla.Gateway.Forwarding;

/// <summary>
/// Who a Docker API request comes from, for the audit trail. The Docker API has no login of its own, so the caller is
/// named by the address it connects from (<c>anonymous@10.0.0.7</c>). A request a gateway forwarded to a container's
/// node arrives from the gateway, so the gateway names the original caller in <see cref="ForwardedForHeader"/>; the
/// node believes that header only from an address a cluster process registered, never from anyone else.
/// </summary>
public sealed class CallerIdentity(Func<CancellationToken, Task<IEnumerable<string>>> clusterAddresses)
{
    /// <summary>Believes the addresses of the processes registered in the cluster's node table.</summary>
    public CallerIdentity(ClusterQueries queries)
        : this(async ct => (await queries.NodesAsync(ct)).Select(n => n.Address))
    {
    }

    /// <summary>The caller as the forwarding gateway saw it (the value is an audit user name).</summary>
    public const string ForwardedForHeader = "X-Flotilla-Forwarded-For";

    public const int MaxUserLength = 200;

    /// <summary>How long the addresses of the cluster's processes are reused before they are read again.</summary>
    private static readonly TimeSpan PeersFreshFor = TimeSpan.FromSeconds(5);

    /// <summary>An unknown address causes a re-read at most this often (a gateway that just joined).</summary>
    private static readonly TimeSpan MissRereadAfter = TimeSpan.FromSeconds(1);

    private volatile PeerSnapshot _peers = new(new HashSet<IPAddress>(), DateTimeOffset.MinValue);

    private sealed record PeerSnapshot(IReadOnlySet<IPAddress> Addresses, DateTimeOffset ReadAt);

    /// <summary>The name of a caller connecting from <paramref name="remote"/> itself.</summary>
    public static string Direct(IPAddress? remote) => remote is null ? "anonymous@local" : $"anonymous@{Normalize(remote)}";

    /// <summary>
    /// The caller of a request from <paramref name="remote"/>: the forwarded caller when a cluster process forwarded
    /// it (both forwarding headers present, a well-formed name, from a registered address), else the direct caller.
    /// </summary>
    public async Task<string> ResolveAsync(IPAddress? remote, string? forwardedBy, string? forwardedFor, CancellationToken cancellationToken = default)
    {
        var direct = Direct(remote);
        if (remote is null || string.IsNullOrEmpty(forwardedBy) || !IsWellFormed(forwardedFor)) return direct;
        return await IsClusterPeerAsync(Normalize(remote), cancellationToken) ? forwardedFor! : direct;
    }

    /// <summary>
    /// Whether a request from <paramref name="remote"/> carrying the forwarded-by header comes from a cluster process:
    /// the same trust <see cref="ResolveAsync"/> gives the forwarded caller, for the forwarded correlation id.
    /// </summary>
    public async Task<bool> IsForwardedByClusterAsync(IPAddress? remote, string? forwardedBy, CancellationToken cancellationToken = default) =>
        remote is not null && !string.IsNullOrEmpty(forwardedBy) && await IsClusterPeerAsync(Normalize(remote), cancellationToken);

    /// <summary>A user name as the audit trail stores it: printable, no spaces or separators a log line could be split on.</summary>
    public static bool IsWellFormed(string? user) =>
        !string.IsNullOrEmpty(user) && user.Length <= MaxUserLength && user.All(c => c > ' ' && c < 0x7f && c != ',' && c != ';');

    private async Task<bool> IsClusterPeerAsync(IPAddress remote, CancellationToken cancellationToken)
    {
        var peers = _peers;
        var age = DateTimeOffset.UtcNow - peers.ReadAt;
        if (age < PeersFreshFor && (peers.Addresses.Contains(remote) || age < MissRereadAfter)) return peers.Addresses.Contains(remote);
        peers = new PeerSnapshot(await ReadPeersAsync(cancellationToken), DateTimeOffset.UtcNow);
        _peers = peers;
        return peers.Addresses.Contains(remote);
    }

    /// <summary>The IP of every registered cluster process (its Akka address, <c>akka.tcp://flotilla@IP:port</c>).</summary>
    private async Task<IReadOnlySet<IPAddress>> ReadPeersAsync(CancellationToken cancellationToken)
    {
        var addresses = new HashSet<IPAddress>();
        foreach (var address in await clusterAddresses(cancellationToken))
            if (Uri.TryCreate(address, UriKind.Absolute, out var uri) && IPAddress.TryParse(uri.Host.Trim('[', ']'), out var ip))
                addresses.Add(Normalize(ip));
        return addresses;
    }

    private static IPAddress Normalize(IPAddress ip) => ip.IsIPv4MappedToIPv6 ? ip.MapToIPv4() : ip;
}
