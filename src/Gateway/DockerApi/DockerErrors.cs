using System.Text.Json;
using Flotilla.Cluster;
using Flotilla.Contracts;
using Flotilla.Gateway.Http;
using Flotilla.NodeRuntime.Oci;
using Flotilla.NodeRuntime.Storage;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Flotilla.Gateway.DockerApi;

/// <summary>The one mapping of refusals to Docker's statuses and error shape, for every Docker API endpoint.</summary>
public static class DockerErrors
{
    /// <summary>Runs the endpoint; a refusal before anything was sent becomes <c>{"message": …}</c> (304 has no body).</summary>
    public static async Task Guarded(HttpContext context, Func<Task> action)
    {
        try
        {
            await action();
        }
        catch (OperationRejectedException ex) when (!context.Response.HasStarted && ex.Code == RejectionCode.NotModified)
        {
            context.Response.StatusCode = StatusCodes.Status304NotModified;
        }
        catch (Exception ex) when (!context.Response.HasStarted && Status(ex) is { } status)
        {
            await JsonReply.ErrorAsync(context, status, ex.Message);
        }
    }

    public static int? Status(Exception ex) => ex switch
    {
        OperationRejectedException e => (int)e.Code,
        // dockerd answers a registry's refusal of a pull or push with 500, never 401: the CLI would take 401 as its
        // cue to prompt for a login. Only POST /auth answers 401.
        Flotilla.NodeRuntime.Distribution.RegistryException e => e.Status is 401 or 403 ? StatusCodes.Status500InternalServerError : e.Status,
        FormatException or InvalidDataException or JsonException or UnsafeLayerException or DigestMismatchException
            => StatusCodes.Status400BadRequest,
        OciRuntimeException => StatusCodes.Status500InternalServerError,
        // dockerd answers a deadline with 500 and what ran out; never the generic "internal error".
        TimeoutException or Akka.Actor.AskTimeoutException => StatusCodes.Status500InternalServerError,
        // A body cut short or over its cap (RequestBodyLimits): Kestrel's status (400, 408, 413).
        BadHttpRequestException e => e.StatusCode,
        _ => null,
    };

    public static OperationRejectedException NotFound(string message) => new(RejectionCode.NotFound, message);

    /// <summary>
    /// What a client may read about a failure once a stream is under way: the message of an expected failure (a
    /// registry's refusal, a network or format error: the client's own business), else a generic line with an id
    /// under which the details are logged (an exception's text can carry paths and internals).
    /// </summary>
    public static string StreamMessage(HttpContext context, Exception ex)
    {
        if (Status(ex) is not null || ex is HttpRequestException or IOException or TimeoutException or OperationCanceledException
                or System.Security.Authentication.AuthenticationException)
            return ex.Message;
        var requestId = Guid.NewGuid().ToString("N");
        var log = context.RequestServices.GetService<ILoggerFactory>()?.CreateLogger(typeof(DockerErrors)) ?? NullLogger.Instance;
        log.LogError(ex, "{Method} {Path} failed (request {RequestId})", context.Request.Method, context.Request.Path, requestId);
        return $"internal error (request {requestId}); the server log has the details";
    }
}
