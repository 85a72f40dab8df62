using System.Net;
using System.Net.Security;
using System.Security.Authentication;
using Flotilla.Cluster.Security;
using Flotilla.Contracts.Security;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;

namespace Flotilla.Gateway.Http;

/// <summary>A process that holds the cluster CA key answers join-token enrollments here (see <see cref="Enrollment"/>).</summary>
public sealed record EnrollmentOptions(IPEndPoint Endpoint, ClusterCa Ca, JoinToken Token, ClusterTls Tls);

/// <summary>
/// <c>POST /_flotilla/pki/v1/enroll</c> on its own HTTPS listener (this process's cluster certificate; no client
/// certificate, since the joiner has none yet). Nothing else is served there. A wrong proof is a 403 and a
/// <see cref="ClusterAccessDenied"/> (surface <c>enrollment</c>).
/// </summary>
public static class EnrollmentEndpoint
{
    public const string Surface = ClusterSurfaces.Enrollment;

    public static void Listen(KestrelServerOptions kestrel, EnrollmentOptions options) =>
        kestrel.Listen(options.Endpoint, listen =>
        {
            listen.Protocols = HttpProtocols.Http1;
            Listeners.ClientConnection.Tag(listen, Contracts.Access.ClientListener.Enrollment);
            listen.UseHttps(new TlsHandshakeCallbackOptions
            {
                OnConnection = _ => ValueTask.FromResult(new SslServerAuthenticationOptions
                {
                    ServerCertificate = options.Tls.Certificate,
                    EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                }),
            });
        });

    public static void Map(WebApplication app, EnrollmentOptions options) =>
        app.MapWhen(c => Listeners.ClientConnection.ListenerOf(c) == Contracts.Access.ClientListener.Enrollment, enroll =>
        {
            enroll.Run(async context =>
            {
                if (!HttpMethods.IsPost(context.Request.Method) || context.Request.Path != Enrollment.Path)
                {
                    await JsonReply.ErrorAsync(context, StatusCodes.Status404NotFound, "page not found");
                    return;
                }
                EnrollmentRequest? request;
                try
                {
                    request = await context.Request.ReadFromJsonAsync<EnrollmentRequest>(context.RequestAborted);
                }
                catch (System.Text.Json.JsonException)
                {
                    request = null;
                }
                var (response, refusal) = request is null ? (null, "malformed request") : Enrollment.Answer(options.Ca, options.Token, request);
                if (response is null)
                {
                    context.RequestServices.GetService<ClusterAccessLog>()?.Refused(Surface, context.Connection.RemoteIpAddress?.ToString(),
                        request is null ? null : $"{request.Role} {request.Name}", refusal!);
                    await JsonReply.ErrorAsync(context, StatusCodes.Status403Forbidden, refusal!);
                    return;
                }
                await context.Response.WriteAsJsonAsync(response, context.RequestAborted);
            });
        });
}
