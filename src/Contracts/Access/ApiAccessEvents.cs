using MessagePack;

namespace Flotilla.Contracts.Access;

/// <summary>Which client-facing listener a request came in on.</summary>
public enum ClientListener
{
    DockerApi,
    DockerSocket,
    NativeApi,
    Registry,

    /// <summary>A gateway's listener for its peers (cluster TLS): not a client listener, tagged so dispatch stays by listener.</summary>
    PeerApi,

    /// <summary>Where join tokens are exchanged for certificates (on the process holding the CA key).</summary>
    Enrollment,
}

/// <summary>
/// A client listener refused a request before it reached the API: a foreign browser <c>Origin</c>, a <c>Host</c>
/// that is not one of the listener's names (DNS rebinding), a JSON endpoint sent another content type, a native
/// API call without a valid token or with a token whose role may not do it. Stored in <c>api-access</c>; the
/// metadata user is who asked, as far as the listener could tell.
/// </summary>
[MessagePackObject(true)]
public sealed record ApiAccessDenied(string Listener, string Method, string Path, string Reason, string? Origin, string? Host,
    string? RemoteAddress, DateTimeOffset At, int Repeats = 0);

public static class ApiAccessStreams
{
    public const string Denials = "api-access";
}
