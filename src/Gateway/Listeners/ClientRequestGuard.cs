using System.Net;
using System.Text.RegularExpressions;
using Flotilla.Cluster.Audit;
using Flotilla.Contracts;
using Flotilla.Contracts.Access;
using Flotilla.Contracts.Registry;
using Flotilla.Gateway.Http;
using Flotilla.Gateway.Registry;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;

namespace Flotilla.Gateway.Listeners;

/// <summary>What a client listener lets browsers and names do (see docs/SECURITY.md, "Client listeners").</summary>
/// <param name="AllowedHosts">Host names the listeners answer to besides IP literals, <c>localhost</c> and this machine's name (<c>--allowed-host</c>).</param>
/// <param name="AllowedOrigins">Browser origins allowed to call (<c>--api-cors-header</c>, as dockerd; <c>*</c> for any); none by default.</param>
public sealed record BrowserPolicy(IReadOnlyList<string> AllowedHosts, IReadOnlyList<string> AllowedOrigins)
{
    public static readonly BrowserPolicy Default = new([], []);

    private static readonly string MachineName = Dns.GetHostName();

    /// <summary>Why a request with these headers is refused on <paramref name="listener"/> (status and message), or null.</summary>
    public (int Status, string Reason)? RefusalOf(ClientListener listener, string? host, string? origin, string? secFetchSite)
    {
        if (listener != ClientListener.DockerSocket && !IsAllowedHost(host))
            return (StatusCodes.Status400BadRequest, $"Host {host} is not a name this listener answers to (see --allowed-host)");
        if (IsCrossSite(origin, secFetchSite) && (string.IsNullOrEmpty(origin) || !IsAllowedOrigin(origin)))
            return (StatusCodes.Status403Forbidden,
                $"requests from browser origin {(string.IsNullOrEmpty(origin) ? "(cross-site)" : origin)} are not allowed (see --api-cors-header)");
        return null;
    }

    /// <summary>A browser request: it names its origin, or marks itself as from another site (GETs may carry no <c>Origin</c>).</summary>
    public static bool IsCrossSite(string? origin, string? secFetchSite) =>
        !string.IsNullOrEmpty(origin) || secFetchSite is "cross-site" or "same-site";

    /// <summary>IP literals (a page is only at one by being that origin), <c>localhost</c> and its subdomains, this machine's name, or a configured name.</summary>
    private bool IsAllowedHost(string? hostHeader)
    {
        if (string.IsNullOrEmpty(hostHeader)) return true;
        var host = new HostString(hostHeader);
        var name = host.Host.TrimEnd('.');
        if (IPAddress.TryParse(name.Trim('[', ']'), out _)) return true;
        // *.localhost is loopback by definition (RFC 6761; browsers resolve it themselves, so it cannot be rebound);
        // the docker CLI names the socket's daemon api.moby.localhost.
        if (name.Equals("localhost", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".localhost", StringComparison.OrdinalIgnoreCase) ||
            name.Equals(MachineName, StringComparison.OrdinalIgnoreCase)) return true;
        return AllowedHosts.Any(h => h.Equals(name, StringComparison.OrdinalIgnoreCase));
    }

    public bool IsAllowedOrigin(string origin) =>
        AllowedOrigins.Any(o => o == "*" || o.TrimEnd('/').Equals(origin, StringComparison.OrdinalIgnoreCase));
}

/// <summary>
/// The first HTTP middleware of every client listener. A web page can send requests to loopback (a <c>no-cors</c>
/// POST with a <c>text/plain</c> body needs no preflight) or rebind its own name to 127.0.0.1; so a request is
/// refused when it carries a browser <c>Origin</c> (or <c>Sec-Fetch-Site</c>) that is not allow-listed, when its
/// <c>Host</c> is a name this listener does not answer to, and, on the Docker and native APIs, when a JSON endpoint
/// gets a body that is not <c>application/json</c> (moby's <c>CheckForJSON</c>). Each refusal is recorded.
/// </summary>
public sealed partial class ClientRequestGuard(RequestDelegate next, ClientListener defaultListener, BrowserPolicy policy, ApiAccessLog denials,
    ILogger<ClientRequestGuard> logger)
{
    // Endpoints whose bodies are archives, not JSON (moby checks JSON only where it decodes JSON).
    [GeneratedRegex(@"^(/v[0-9]+(\.[0-9]+)?)?/(images/create|images/load|build|containers/[^/]+/archive)/?$", RegexOptions.IgnoreCase)]
    private static partial Regex RawBodyPath();

    public async Task InvokeAsync(HttpContext context)
    {
        // The Docker API branch serves both its TCP listener and its unix socket.
        var listener = ClientConnection.ListenerOf(context) ?? defaultListener;
        var request = context.Request;
        var origin = request.Headers.Origin.FirstOrDefault();
        if (policy.RefusalOf(listener, request.Host.Value, origin, request.Headers["Sec-Fetch-Site"].FirstOrDefault()) is { } refusal)
        {
            await RefuseAsync(context, listener, refusal.Status, refusal.Reason);
            return;
        }
        if (!string.IsNullOrEmpty(origin))
        {
            // An allow-listed origin gets dockerd's CORS answer, preflight included.
            context.Response.Headers.AccessControlAllowOrigin = origin;
            context.Response.Headers.AccessControlAllowHeaders = "Origin, X-Requested-With, Content-Type, Accept, X-Registry-Auth, Authorization";
            context.Response.Headers.AccessControlAllowMethods = "HEAD, GET, POST, DELETE, PUT, OPTIONS";
            if (HttpMethods.IsOptions(request.Method))
            {
                context.Response.StatusCode = StatusCodes.Status200OK;
                return;
            }
        }
        if (listener != ClientListener.Registry && HasBody(context) && !RawBodyPath().IsMatch(request.Path.Value ?? "") && !IsJson(request.ContentType))
        {
            await RefuseAsync(context, listener, StatusCodes.Status400BadRequest,
                $"unsupported Content-Type header ({request.ContentType}): must be 'application/json'");
            return;
        }
        await next(context);
    }

    private static bool HasBody(HttpContext context) =>
        context.Request.ContentLength is > 0 ||
        (context.Request.ContentLength is null && context.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody == true);

    internal static bool IsJson(string? contentType) =>
        Microsoft.Net.Http.Headers.MediaTypeHeaderValue.TryParse(contentType, out var media) &&
        media.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase);

    private async Task RefuseAsync(HttpContext context, ClientListener listener, int status, string reason)
    {
        var request = context.Request;
        var remote = context.Connection.RemoteIpAddress;
        var user = ClientConnection.PeerUserOf(context) ?? Forwarding.CallerIdentity.Direct(remote);
        await RecordAsync(denials, logger, new ApiAccessDenied(listener.ToString(), request.Method, Truncate(request.Path.Value) ?? "", reason,
            Truncate(request.Headers.Origin.FirstOrDefault()), Truncate(request.Host.Value), remote?.ToString(), DateTimeOffset.UtcNow), user, context.TraceIdentifier);
        if (listener == ClientListener.Registry)
            await RegistryErrors.WriteAsync(context, RegistryErrorCodes.Denied, reason, status: status);
        else
            await JsonReply.ErrorAsync(context, status, reason);
    }

    /// <summary>Records a refusal; a store that cannot take it is logged, and the request is refused all the same.</summary>
    internal static async Task RecordAsync(ApiAccessLog denials, ILogger logger, ApiAccessDenied denial, string user, string requestId)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await denials.RecordDenialAsync(denial, new RequestOrigin(user, requestId), timeout.Token);
        }
        catch (Exception ex)
        {
            logger.LogError(ex, "could not record the refusal of {Method} {Path} ({Reason})", denial.Method, denial.Path, denial.Reason);
        }
    }

    internal static string? Truncate(string? value) => value is { Length: > 256 } ? value[..256] : value;
}
