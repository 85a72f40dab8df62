using Flotilla.Cluster.Registry;
using Flotilla.Contracts.Registry;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Flotilla.Gateway.Registry;

/// <summary>
/// Front of the registry pipeline (after auth): the API version header every response carries, and
/// refusals turned into the spec's error body.
/// </summary>
public sealed class RegistryHeadersMiddleware(RequestDelegate next, ILogger<RegistryHeadersMiddleware> logger)
{
    public const string ApiVersionHeader = "Docker-Distribution-API-Version";

    public async Task InvokeAsync(HttpContext context)
    {
        context.Response.Headers[ApiVersionHeader] = "registry/2.0";
        try
        {
            await next(context);
        }
        catch (RegistryException ex) when (!context.Response.HasStarted)
        {
            await RegistryErrors.WriteAsync(context, ex.Code, ex.Message, ex.Detail);
        }
        catch (BadHttpRequestException ex) when (!context.Response.HasStarted)
        {
            // A body cut short or over a limit: Kestrel's status (400, 408, 413) with our error shape.
            await RegistryErrors.WriteAsync(context, RegistryErrorCodes.BlobUploadInvalid, ex.Message, status: ex.StatusCode);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
        }
        catch (Exception ex) when (!context.Response.HasStarted && !context.RequestAborted.IsCancellationRequested)
        {
            var requestId = Guid.NewGuid().ToString("N");
            logger.LogError(ex, "registry {Method} {Path} failed (request {RequestId})", context.Request.Method, context.Request.Path, requestId);
            await RegistryErrors.WriteAsync(context, RegistryErrorCodes.Unknown, $"internal error (request {requestId}); the server log has the details");
        }
    }
}
