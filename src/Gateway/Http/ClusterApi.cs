using System.Buffers;
using System.IO.Pipelines;
using System.Net.Security;
using System.Security.Authentication;
using Flotilla.Cluster.Security;
using Flotilla.Contracts.Security;
using Flotilla.NodeRuntime.Distribution;
using Microsoft.AspNetCore.Connections;
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

    /// <summary>How long a connection may wait before its first byte (Kestrel's own TLS handshake timeout).</summary>
    private static readonly TimeSpan FirstByteTimeout = TimeSpan.FromSeconds(10);

    public static void UseClusterTls(ListenOptions listen, ClusterTls tls, string surface)
    {
        var access = listen.ApplicationServices.GetService<ClusterAccessLog>();
        listen.Use(next => connection => RefusePlainAsync(connection, next, access, surface));
        listen.UseHttps(new TlsHandshakeCallbackOptions
        {
            OnConnection = context =>
            {
                var remote = AddressOf(context.Connection.RemoteEndPoint);
                return ValueTask.FromResult(new SslServerAuthenticationOptions
                {
                    ServerCertificate = tls.Certificate,
                    ClientCertificateRequired = true,
                    EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                    RemoteCertificateValidationCallback = (_, certificate, _, _) =>
                    {
                        var check = tls.Verify(certificate);
                        if (!check.Trusted) access?.Refused(surface, remote, certificate?.Subject, check.Refusal!);
                        return check.Trusted;
                    },
                });
            },
        });
    }

    /// <summary>
    /// Looks at the first byte before the TLS handshake reads it (nothing is consumed): a TLS connection starts with a
    /// handshake record (0x16). Anything else — plain HTTP, other protocols, garbage — is recorded as a refusal of the
    /// source address, then the TLS layer refuses it as before. Kestrel only logs such handshakes at debug level.
    /// </summary>
    private static async Task RefusePlainAsync(ConnectionContext connection, ConnectionDelegate next, ClusterAccessLog? access, string surface)
    {
        var input = connection.Transport.Input;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(connection.ConnectionClosed);
        timeout.CancelAfter(FirstByteTimeout);
        ReadResult read;
        try
        {
            read = await input.ReadAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            connection.Abort();
            return;
        }
        var buffer = read.Buffer;
        if (!buffer.IsEmpty && buffer.FirstSpan[0] != TlsHandshakeRecord)
        {
            var start = System.Text.Encoding.ASCII.GetString(buffer.Slice(0, Math.Min(buffer.Length, 8)).ToArray());
            var http = HttpMethodsSeen.Any(m => start.StartsWith(m + " ", StringComparison.Ordinal));
            access?.Refused(surface, AddressOf(connection.RemoteEndPoint), null, http ? "plain HTTP on the TLS port" : "not a TLS handshake (plain TCP)");
        }
        input.AdvanceTo(buffer.Start);
        await next(connection);
    }

    private const byte TlsHandshakeRecord = 0x16;
    private static readonly string[] HttpMethodsSeen = ["GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE"];

    /// <summary>The peer's IP alone: one address is one kind in the denial window, whatever port it comes from.</summary>
    private static string? AddressOf(System.Net.EndPoint? endpoint) => endpoint is System.Net.IPEndPoint ip
        ? (ip.Address.IsIPv4MappedToIPv6 ? ip.Address.MapToIPv4() : ip.Address).ToString()
        : endpoint?.ToString();

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
