using MessagePack;

namespace Flotilla.Contracts.Security;

/// <summary>Where a cluster process refused someone.</summary>
public static class ClusterSurfaces
{
    /// <summary>Akka.Remote: a TLS handshake without a certificate of the cluster CA, or no TLS at all (plain TCP).</summary>
    public const string Transport = "cluster-transport";
    /// <summary>A node's HTTPS API (forwarded streams, peer blobs): no client certificate of the cluster CA.</summary>
    public const string NodeApi = "node-api";
    /// <summary>A gateway's peer API (the blobs imported through it): no client certificate of the cluster CA.</summary>
    public const string PeerApi = "peer-api";
    /// <summary><c>X-Flotilla-Forwarded-For</c> from a caller that is not an authenticated gateway: ignored.</summary>
    public const string ForwardedIdentity = "forwarded-identity";
    /// <summary>A join-token enrollment refused: a wrong, revoked or expired token, a malformed request, too many attempts.</summary>
    public const string Enrollment = "enrollment";
}

/// <summary>
/// A cluster process refused a peer on one of its cluster surfaces. Stored in the refusing process's
/// <c>cluster-access-&lt;process name&gt;</c> stream; repeats from one address within a few seconds are counted in
/// the next event (<see cref="Repeats"/>) instead of each making one, so a flood cannot flood the store.
/// </summary>
[MessagePackObject(true)]
public sealed record ClusterAccessDenied(string Surface, string? RemoteAddress, string? Subject, string Reason, int Repeats, DateTimeOffset At);

/// <summary>
/// A process that holds the cluster CA key signed a joiner's certificate (join-token enrollment): who asked (role,
/// name, the addresses put in the certificate, the source address), the certificate's serial number and end, and when
/// the token it used expires. In the CA holder's <c>cluster-access-&lt;process name&gt;</c> stream, next to the refusals.
/// </summary>
[MessagePackObject(true)]
public sealed record ClusterMemberEnrolled(
    string Role, string Name, IReadOnlyList<string> Addresses, string? RemoteAddress, string Serial, DateTimeOffset NotAfter,
    DateTimeOffset TokenExpires, DateTimeOffset At);

public static class ClusterAccessStreams
{
    public const string Prefix = "cluster-access-";
    public static string Key(string processName) => Prefix + processName;
}
