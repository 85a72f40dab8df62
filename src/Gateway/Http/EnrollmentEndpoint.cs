using System.Globalization;
using System.Net;
using System.Net.Security;
using System.Security.Authentication;
using System.Threading.RateLimiting;
using Flotilla.Cluster.Security;
using Flotilla.Contracts.Security;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Flotilla.Gateway.Http;

/// <summary>
/// A process that holds the cluster CA key answers join-token enrollments here (see <see cref="Enrollment"/>).
/// <paramref name="SecretDirectory"/> holds the <see cref="JoinSecret"/>, read again for every attempt (so a rotation
/// revokes tokens without a restart).
/// </summary>
public sealed record EnrollmentOptions(IPEndPoint Endpoint, ClusterCa Ca, string SecretDirectory, ClusterTls Tls)
{
    public EnrollmentLimits Limits { get; init; } = EnrollmentLimits.Default;
}

/// <summary>
/// Attempts per source address: a burst of <paramref name="Burst"/>, then one per <paramref name="Refill"/> (a token
/// bucket). A joiner needs one; the limit bounds what a stranger makes the CA holder do (HMACs, signatures, events).
/// </summary>
public sealed record EnrollmentLimits(int Burst, TimeSpan Refill)
{
    public static readonly EnrollmentLimits Default = new(10, TimeSpan.FromSeconds(6));
}

/// <summary>
/// <c>POST /_flotilla/pki/v1/enroll</c> on its own HTTPS listener (this process's cluster certificate; no client
/// certificate, since the joiner has none yet). Nothing else is served there. Every attempt first takes a permit of
/// its source address (<see cref="EnrollmentLimits"/>; without one, 429 with <c>Retry-After</c>). A refusal (wrong,
/// revoked or expired token, malformed request, too many attempts) is a 4xx in the Docker error shape and a
/// <see cref="ClusterAccessDenied"/> (surface <c>enrollment</c>); a certificate is handed out only after its
/// <see cref="ClusterMemberEnrolled"/> is stored.
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

    public static void Map(WebApplication app, EnrollmentOptions options)
    {
        var limiter = PartitionedRateLimiter.Create<IPAddress, IPAddress>(address => RateLimitPartition.GetTokenBucketLimiter(address,
            _ => new TokenBucketRateLimiterOptions
            {
                TokenLimit = options.Limits.Burst,
                TokensPerPeriod = 1,
                ReplenishmentPeriod = options.Limits.Refill,
                QueueLimit = 0,
                AutoReplenishment = true,
            }));
        app.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopped.Register(limiter.Dispose);
        app.MapWhen(c => Listeners.ClientConnection.ListenerOf(c) == Contracts.Access.ClientListener.Enrollment, enroll =>
            enroll.Run(context => AnswerAsync(context, options, limiter)));
    }

    private static async Task AnswerAsync(HttpContext context, EnrollmentOptions options, PartitionedRateLimiter<IPAddress> limiter)
    {
        var access = context.RequestServices.GetService<ClusterAccessLog>();
        var address = context.Connection.RemoteIpAddress is { } ip && ip.IsIPv4MappedToIPv6 ? ip.MapToIPv4() : context.Connection.RemoteIpAddress ?? IPAddress.None;
        var remote = address.ToString();
        using var lease = limiter.AttemptAcquire(address);
        if (!lease.IsAcquired)
        {
            var wait = lease.TryGetMetadata(MetadataName.RetryAfter, out var retryAfter) ? retryAfter : options.Limits.Refill;
            var seconds = Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds));
            access?.Refused(Surface, remote, null, "too many enrollment attempts");
            context.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
            await JsonReply.ErrorAsync(context, StatusCodes.Status429TooManyRequests,
                $"too many enrollment attempts from {remote}; retry after {seconds} s");
            return;
        }
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
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException)
        {
            request = null;
        }
        var decision = request is null
            ? EnrollmentDecision.Refused("malformed request")
            : Enrollment.Answer(options.Ca, JoinSecret.Load(options.SecretDirectory), request, DateTimeOffset.UtcNow);
        if (decision is not { Response: { } response, Serial: { } serial, NotAfter: { } notAfter })
        {
            access?.Refused(Surface, remote, request is null ? null : $"{request.Role} {request.Name}", decision.Refusal!);
            await JsonReply.ErrorAsync(context, StatusCodes.Status403Forbidden, decision.Refusal!);
            return;
        }
        if (access is not null)
        {
            try
            {
                await access.EnrolledAsync(new ClusterMemberEnrolled(request!.Role, request.Name, request.Addresses, remote, serial, notAfter,
                    DateTimeOffset.FromUnixTimeSeconds(request.Expires), DateTimeOffset.UtcNow), context.RequestAborted);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // No certificate leaves without its record.
                await JsonReply.ErrorAsync(context, StatusCodes.Status503ServiceUnavailable, "the enrollment could not be recorded; try again");
                return;
            }
        }
        await context.Response.WriteAsJsonAsync(response, context.RequestAborted);
    }
}
