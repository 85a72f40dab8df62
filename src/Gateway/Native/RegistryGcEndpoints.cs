using Flotilla.Cluster.Registry;
using Flotilla.Gateway.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Flotilla.Gateway.Native;

/// <summary><c>POST /api/registry/gc?minAgeSeconds=N</c>: registry garbage collection (default grace period 1 h).</summary>
public static class RegistryGcEndpoints
{
    public static readonly TimeSpan DefaultMinAge = TimeSpan.FromHours(1);

    public static void MapRegistryGcEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapPost("/api/registry/gc", async context =>
        {
            var minAge = DefaultMinAge;
            var text = context.Request.Query["minAgeSeconds"].ToString();
            if (text.Length > 0)
            {
                if (!long.TryParse(text, out var seconds) || seconds < 0 || seconds > (long)TimeSpan.MaxValue.TotalSeconds)
                {
                    await JsonReply.ErrorAsync(context, StatusCodes.Status400BadRequest, $"minAgeSeconds: '{text}' is not a number of seconds");
                    return;
                }
                minAge = TimeSpan.FromSeconds(seconds);
            }
            var report = await context.RequestServices.GetRequiredService<RegistryService>().CollectGarbageAsync(minAge, context.RequestAborted);
            await JsonReply.WriteAsync(context, report, options: JsonReply.Native);
        });
    }
}
