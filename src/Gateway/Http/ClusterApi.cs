using System.Net.Security;
using System.Security.Authentication;
using Flotilla.Cluster.Security;
using Flotilla.Contracts.Security;
using Flotilla.NodeRuntime.Distribution;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;

namespace Flotilla.Gateway.Http;

/// <summary>
/// The cluster-only HTTP listeners: a node's own Docker API (what gateways forward to it, and peer blobs) and a
/// gateway's peer listener. HTTPS with a client certificate of the cluster CA required in the handshake; a stranger's
/// handshake fails (and is recorded) before any request is read. Then by role: a gateway may use the node's Docker
/// API (it forwards its clients' container streams there), a node may only fetch blobs.
/// </summary>
public static class ClusterApi
{
    /// <summary><see cref="HttpContext.Items"/> key of the <see cref="ClusterPeer"/> that a request came from.</summary>
    public const string PeerItem = "flotilla.cluster-peer";

    public static void UseClusterTls(ListenOptions listen, ClusterTls tls)
    {
        var access = listen.ApplicationServices.GetService<ClusterAccessLog>();
        listen.UseHttps(new TlsHandshakeCallbackOptions
        {
            OnConnection = context =>
            {
                var remote = context.Connection.RemoteEndPoint?.ToString();
                return ValueTask.FromResult(new SslServerAuthenticationOptions
                {
                    ServerCertificate = tls.Certificate,
                    ClientCertificateRequired = true,
                    EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                    RemoteCertificateValidationCallback = (_, certificate, _, _) =>
                    {
                        var check = tls.Verify(certificate);
                        if (!check.Trusted) access?.Refused(ClusterSurfaces.NodeApi, remote, certificate?.Subject, check.Refusal!);
                        return check.Trusted;
                    },
                });
            },
        });
    }

    /// <summary>The peer a request on a cluster listener came from (its certificate passed the handshake), or null.</summary>
    public static ClusterPeer? PeerOf(HttpContext context) => context.Items[PeerItem] as ClusterPeer;

    /// <summary>The role check after the handshake: nodes fetch blobs; gateways forward.</summary>
    public sealed class Authorization(RequestDelegate next, ClusterTls tls)
    {
        public async Task InvokeAsync(HttpContext context)
        {
            var access = context.RequestServices.GetService<ClusterAccessLog>();
            var remote = context.Connection.RemoteIpAddress?.ToString();
            var check = tls.Verify(context.Connection.ClientCertificate);
            if (check.Peer is not { } peer)
            {
                access?.Refused(ClusterSurfaces.NodeApi, remote, context.Connection.ClientCertificate?.Subject, check.Refusal!);
                await JsonReply.ErrorAsync(context, StatusCodes.Status403Forbidden, "a client certificate of this cluster is required");
                return;
            }
            if (peer.Role != ClusterRole.Gateway && !context.Request.Path.StartsWithSegments(PeerBlobFetcher.BlobsPath.TrimEnd('/')))
            {
                access?.Refused(ClusterSurfaces.NodeApi, remote, peer.Subject, $"a {ClusterCa.RoleName(peer.Role)} certificate may only fetch blobs, not {context.Request.Method} {context.Request.Path}");
                await JsonReply.ErrorAsync(context, StatusCodes.Status403Forbidden, $"{ClusterCa.RoleName(peer.Role)} {peer.Name} may only fetch blobs here");
                return;
            }
            context.Items[PeerItem] = peer;
            await next(context);
        }
    }
}
