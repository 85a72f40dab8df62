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
        // Only requests the auth middleware parsed get here (RegistryRequest), so this answers no real route.
        app.MapFallback(c => RegistryErrors.WriteAsync(c, RegistryErrorCodes.Unsupported, "page not found", null, StatusCodes.Status404NotFound));
    }
}
