using System.Net;
using Flotilla.Cluster.Queries;
using Flotilla.Gateway.DockerApi;
using Flotilla.Gateway.Hijack;
using Flotilla.Gateway.Http;
using Flotilla.Gateway.Native;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Flotilla.Gateway;

/// <summary>Where the gateway listens.</summary>
/// <param name="DockerSocket">A unix socket for the Docker API too (as dockerd's <c>/var/run/docker.sock</c>), or null.</param>
public sealed record GatewayOptions(IPEndPoint DockerApi, IPEndPoint NativeApi, string? DockerSocket = null);

/// <summary>The HTTP surfaces of a gateway, each on its own listener, sharing one Kestrel server.</summary>
public static class GatewayHosting
{
    public static void AddFlotillaGateway(this WebApplicationBuilder builder, GatewayOptions options, GatewayInfo info)
    {
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(info);
        builder.Services.AddRouting();
        builder.Services.AddSingleton<ExecRegistry>();
        builder.Services.AddSingleton<IHijackHandler, AttachHijackHandler>();
        builder.Services.AddSingleton<IHijackHandler, ExecStartHijackHandler>();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            // Image imports and loads are archives of any size; they are streamed, never buffered.
            k.Limits.MaxRequestBodySize = null;
            k.Listen(options.DockerApi, ConfigureDockerListener);
            if (options.DockerSocket is { } socket && DockerSocketFile.Prepare(socket))
                k.ListenUnixSocket(socket, ConfigureDockerListener);
            k.Listen(options.NativeApi);
        });
    }

    private static void ConfigureDockerListener(ListenOptions listen)
    {
        listen.Protocols = HttpProtocols.Http1;
        // Attach and exec start are taken over before Kestrel's HTTP layer (see HijackConnectionMiddleware).
        listen.Use(next =>
        {
            var services = listen.ApplicationServices;
            var middleware = new HijackConnectionMiddleware(next, services.GetServices<IHijackHandler>().ToList(),
                services.GetRequiredService<ILoggerFactory>().CreateLogger<HijackConnectionMiddleware>());
            return middleware.OnConnectedAsync;
        });
    }

    public static void MapFlotillaGateway(this WebApplication app)
    {
        var options = app.Services.GetRequiredService<GatewayOptions>();
        var info = app.Services.GetRequiredService<GatewayInfo>();
        var queries = app.Services.GetRequiredService<ClusterQueries>();

        // Unix socket connections have no local IP address; the only unix socket the gateway listens on is the Docker API's.
        bool IsDockerApi(HttpContext c) => c.Connection.LocalPort == options.DockerApi.Port ||
            (options.DockerSocket is not null && c.Connection.LocalIpAddress is null);
        app.MapWhen(IsDockerApi, docker =>
        {
            docker.UseMiddleware<DockerApiMiddleware>(info);
            docker.UseRouting();
            docker.UseEndpoints(e =>
            {
                e.MapSystemEndpoints(info, queries);
                e.MapEventsEndpoint();
                e.MapImageEndpoints();
                e.MapContainerEndpoints();
                e.MapContainerStreamEndpoints();
                e.MapVolumeEndpoints();
                e.MapFallback(c => JsonReply.ErrorAsync(c, StatusCodes.Status404NotFound, "page not found"));
            });
        });
        app.MapWhen(c => c.Connection.LocalPort == options.NativeApi.Port, native =>
        {
            native.UseRouting();
            native.UseEndpoints(e =>
            {
                e.MapNodesEndpoints(queries);
                e.MapRegistryUsersEndpoints();
                e.MapAuditEndpoints();
                e.MapFallback(c => JsonReply.ErrorAsync(c, StatusCodes.Status404NotFound, $"no route for {c.Request.Method} {c.Request.Path}"));
            });
        });
    }
}
