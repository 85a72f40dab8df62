using System.Net.Security;
using System.Security.Authentication;

namespace Flotilla.Cluster.Security;

/// <summary>
/// A cluster process's API endpoint as it registers it (<c>NodeJoined.ApiEndpoint</c>): <c>https://host:port</c> for a
/// listener that requires cluster certificates, bare <c>host:port</c> for a plain one (the form before TLS, still
/// what <c>--insecure-node-api</c> and the all-in-one process register).
/// </summary>
public readonly record struct ClusterEndpoint(bool Tls, string HostPort)
{
    public const string HttpsPrefix = "https://";

    public static ClusterEndpoint Parse(string registered) =>
        registered.StartsWith(HttpsPrefix, StringComparison.OrdinalIgnoreCase)
            ? new ClusterEndpoint(true, registered[HttpsPrefix.Length..].TrimEnd('/'))
            : new ClusterEndpoint(false, registered);

    public string Register() => Tls ? HttpsPrefix + HostPort : HostPort;

    public Uri Uri(string pathAndQuery) => new($"{(Tls ? "https" : "http")}://{HostPort}{pathAndQuery}");
}

/// <summary>TLS settings for the cluster's HTTP hops: the dialer presents its certificate and checks the server's against the CA.</summary>
public static class ClusterHttps
{
    /// <summary>
    /// Client side: this process's certificate, the server's checked by <see cref="ClusterTls.Verify"/> (chain to the
    /// cluster CA; names are not checked, members are known by certificate and dialled by the address they registered).
    /// </summary>
    public static SslClientAuthenticationOptions ClientOptions(ClusterTls tls, string targetHost) => new()
    {
        TargetHost = targetHost,
        ClientCertificates = [tls.Certificate],
        EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
        RemoteCertificateValidationCallback = (_, certificate, _, errors) => tls.Accepts(certificate, errors),
    };

    /// <summary>A handler for <see cref="HttpClient"/>s that dial cluster processes: https endpoints with this process's certificate.</summary>
    public static void Configure(System.Net.Http.SocketsHttpHandler handler, ClusterTls? tls)
    {
        if (tls is null) return;
        handler.SslOptions = ClientOptions(tls, "flotilla");
    }
}
