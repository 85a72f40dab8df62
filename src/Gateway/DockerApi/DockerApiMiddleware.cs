using Flotilla.Contracts;
using Flotilla.Gateway.Http;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Flotilla.Gateway.DockerApi;

/// <summary>
/// Front of the Docker API pipeline, as moby's version middleware: identifies the server on every
/// response, strips a <c>/v1.NN</c> prefix (refusing versions outside 1.24…1.51 with Docker's
/// messages), remembers the negotiated version and gives the request its correlation id: Flotilla's own, never the
/// client's (see <see cref="ClientRequestId"/>), except from a cluster process that forwards a request it already named.
/// </summary>
public sealed class DockerApiMiddleware(RequestDelegate next, GatewayInfo info, Forwarding.CallerIdentity callers,
    ILogger<DockerApiMiddleware> logger)
{
    public const string VersionItem = "docker-api-version";
    public const string OriginItem = "request-origin";
    public const string RequestIdHeader = ClientRequestId.Header;

    /// <summary>The correlation id a forwarding gateway gave the request; believed only from a cluster process (as the caller).</summary>
    public const string CorrelationHeader = "X-Flotilla-Correlation-Id";

    public async Task InvokeAsync(HttpContext context)
    {
        var headers = context.Response.Headers;
        headers["Server"] = $"Flotilla/{info.ServerVersion} (linux)";
        headers["Api-Version"] = ApiVersion.Max.ToString();
        headers["Ostype"] = "linux";
        headers["Docker-Experimental"] = "false";

        var clientId = ClientRequestId.Parse(context.Request.Headers[RequestIdHeader].FirstOrDefault());
        var requestId = Guid.NewGuid().ToString("N");
        var forwardedBy = context.Request.Headers[Forwarding.NodeForwarder.ForwardedHeader].FirstOrDefault();
        var peer = Http.ClusterApi.PeerOf(context);
        // On the unix socket the kernel names the local user; on TCP the caller is its address (or who a gateway forwarded for).
        var user = Listeners.ClientConnection.PeerUserOf(context) ?? callers.Resolve(context.Connection.RemoteIpAddress, peer, forwardedBy,
            context.Request.Headers[Forwarding.CallerIdentity.ForwardedForHeader].FirstOrDefault());
        // A request an authenticated gateway forwarded keeps that gateway's correlation id (trusted as its caller is).
        // Other forwarded requests share a pooled connection with other callers' requests: no connection-wide story.
        var forwarded = forwardedBy is not null;
        var correlationId = (Forwarding.CallerIdentity.IsForwardedByGateway(peer, forwardedBy)
                ? ClientRequestId.Parse(context.Request.Headers[CorrelationHeader].FirstOrDefault()) : null)
            ?? (forwarded ? requestId : SessionId(context, requestId));
        headers[RequestIdHeader] = clientId ?? requestId;
        headers[CorrelationHeader] = correlationId;
        // The causation id: the client's own request id when it sent one, else this request's when it is not the story's first.
        var causationId = clientId ?? (correlationId == requestId ? null : requestId);
        context.Items[OriginItem] = new RequestOrigin(user, correlationId, causationId);

        var version = ApiVersion.Max;
        var path = context.Request.Path.Value ?? "/";
        if (path.Length > 2 && path[1] == 'v' && char.IsAsciiDigit(path[2]))
        {
            var end = path.IndexOf('/', 1);
            var segment = end < 0 ? path.AsSpan(2) : path.AsSpan(2, end - 2);
            if (!ApiVersion.TryParse(segment, out version))
            {
                await JsonReply.ErrorAsync(context, StatusCodes.Status404NotFound, "page not found");
                return;
            }
            if (version > ApiVersion.Max)
            {
                await JsonReply.ErrorAsync(context, StatusCodes.Status400BadRequest,
                    $"client version {version} is too new. Maximum supported API version is {ApiVersion.Max}");
                return;
            }
            if (version < ApiVersion.Min)
            {
                await JsonReply.ErrorAsync(context, StatusCodes.Status400BadRequest,
                    $"client version {version} is too old. Minimum supported API version is {ApiVersion.Min}, please upgrade your client to a newer version");
                return;
            }
            context.Request.Path = end < 0 ? "/" : path[end..];
        }
        context.Items[VersionItem] = version;
        try
        {
            await next(context);
        }
        catch (Exception ex) when (!context.Response.HasStarted && !context.RequestAborted.IsCancellationRequested)
        {
            // Docker clients only understand their own error shape, even for our bugs; what went wrong stays in the log.
            logger.LogError(ex, "{Method} {Path} failed (request {RequestId})", context.Request.Method, context.Request.Path, requestId);
            await JsonReply.ErrorAsync(context, StatusCodes.Status500InternalServerError,
                $"internal error (request {requestId}); the server log has the details");
        }
    }

    /// <summary>
    /// The docker CLI sends no request ids, but one command mostly keeps one connection (<c>docker run</c>:
    /// ping, pull, create, wait; its start comes on a second connection while wait holds the first, see
    /// <c>AuditQuery.JoinCreationStoryAsync</c>): the connection's first request id is the correlation id of
    /// all its requests. Always an id Flotilla made: a client's X-Request-Id is only its causation id.
    /// </summary>
    private static string SessionId(HttpContext context, string requestId)
    {
        if (context.Features.Get<Microsoft.AspNetCore.Connections.Features.IConnectionItemsFeature>()?.Items is not { } items) return requestId;
        if (items.TryGetValue(SessionItem, out var existing) && existing is string session) return session;
        items[SessionItem] = requestId;
        return requestId;
    }

    private const string SessionItem = "docker-session-id";
}
