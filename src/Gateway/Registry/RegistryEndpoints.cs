using Flotilla.Contracts.Registry;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Flotilla.Gateway.Registry;

/// <summary>The routes of the registry listener.</summary>
public static class RegistryEndpoints
{
    public static void MapRegistryEndpoints(this IEndpointRouteBuilder app)
    {
        // Names have several segments, so everything under /v2 goes to one dispatcher (see RegistryRoute).
        app.Map("/v2", RegistryApi.HandleAsync);
        app.Map("/v2/{**rest}", RegistryApi.HandleAsync);
        app.MapMethods("/v1/_ping", [HttpMethods.Get, HttpMethods.Head], LegacySearch.PingAsync);
        app.MapGet("/v1/search", LegacySearch.SearchAsync);
        app.MapFallback(c =>
        {
            // Kestrel removes dot segments before routing (/v2/../x/tags/list arrives as /x/tags/list): a request
            // aimed at /v2/ that lands here carried a repository name with . or .. segments.
            var raw = c.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpRequestFeature>()?.RawTarget ?? "";
            return raw.StartsWith("/v2/", StringComparison.Ordinal)
                ? RegistryErrors.WriteAsync(c, RegistryErrorCodes.NameInvalid, "invalid repository name", raw, StatusCodes.Status400BadRequest)
                : RegistryErrors.WriteAsync(c, RegistryErrorCodes.Unsupported, "page not found", c.Request.Path.Value, StatusCodes.Status404NotFound);
        });
    }
}
