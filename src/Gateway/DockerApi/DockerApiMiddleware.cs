using Flotilla.Contracts;
using Flotilla.Gateway.Http;
using Microsoft.AspNetCore.Http;

namespace Flotilla.Gateway.DockerApi;

/// <summary>
/// Front of the Docker API pipeline, as moby's version middleware: identifies the server on every
/// response, strips a <c>/v1.NN</c> prefix (refusing versions outside 1.24…1.51 with Docker's
/// messages), remembers the negotiated version and gives the request its correlation id.
/// </summary>
public sealed class DockerApiMiddleware(RequestDelegate next, GatewayInfo info, Forwarding.CallerIdentity callers)
{
    public const string VersionItem = "docker-api-version";
    public const string OriginItem = "request-origin";
    public const string RequestIdHeader = "X-Request-Id";

    public async Task InvokeAsync(HttpContext context)
    {
        var headers = context.Response.Headers;
        headers["Server"] = $"Flotilla/{info.ServerVersion} (linux)";
        headers["Api-Version"] = ApiVersion.Max.ToString();
        headers["Ostype"] = "linux";
        headers["Docker-Experimental"] = "false";

        var requestId = context.Request.Headers[RequestIdHeader].FirstOrDefault();
        string correlationId;
        if (string.IsNullOrWhiteSpace(requestId) || requestId.Length > 128)
        {
            requestId = Guid.NewGuid().ToString("N");
            correlationId = SessionId(context, requestId);
        }
        else correlationId = requestId;
        headers[RequestIdHeader] = requestId;
        // The causation id names the request itself when it is not the story's first.
        var user = callers.Resolve(context.Connection.RemoteIpAddress, Http.ClusterApi.PeerOf(context),
            context.Request.Headers[Forwarding.NodeForwarder.ForwardedHeader].FirstOrDefault(),
            context.Request.Headers[Forwarding.CallerIdentity.ForwardedForHeader].FirstOrDefault());
        context.Items[OriginItem] = new RequestOrigin(user, correlationId, correlationId == requestId ? null : requestId);

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
            // Docker clients only understand their own error shape, even for our bugs.
            await JsonReply.ErrorAsync(context, StatusCodes.Status500InternalServerError, ex.Message);
        }
    }

    /// <summary>
    /// The docker CLI sends no request ids, but one command mostly keeps one connection (<c>docker run</c>:
    /// ping, pull, create, wait; its start comes on a second connection while wait holds the first, see
    /// <c>AuditQuery.JoinCreationStoryAsync</c>): the connection's first request id is the correlation id of
    /// all its requests. A client that sends X-Request-Id chooses its own.
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
