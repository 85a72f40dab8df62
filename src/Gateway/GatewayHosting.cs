using System.Net;
using Flotilla.Cluster.Queries;
using Flotilla.Cluster.Security;
using Flotilla.Gateway.DockerApi;
using Flotilla.Gateway.Hijack;
using Flotilla.Gateway.Http;
using Flotilla.Gateway.Native;
using Flotilla.Gateway.Peer;
using Flotilla.Gateway.Registry;
using Flotilla.Gateway.Registry.Auth;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Flotilla.Gateway;

/// <summary>Where the gateway listens. Without <paramref name="Registry"/> there is no registry listener.</summary>
/// <param name="DockerSocket">A unix socket for the Docker API too (as dockerd's <c>/var/run/docker.sock</c>), or null.</param>
/// <remarks>A node process serves only the Docker API (for its own containers); the native API and registry belong to gateways.</remarks>
public sealed record GatewayOptions(IPEndPoint DockerApi, IPEndPoint? NativeApi, IPEndPoint? Registry = null, string? DockerSocket = null)
{
    /// <summary>
    /// A node's own Docker API is for the cluster only: HTTPS with required client certificates of the cluster CA
    /// (<see cref="ClusterApi"/>). Null: plain HTTP (the all-in-one process, whose Docker API is the client's; a node
    /// started with <c>--insecure-node-api</c>).
    /// </summary>
    public ClusterTls? DockerApiTls { get; init; }

    /// <summary>A gateway's listener for its peers (image blobs imported through it), HTTPS with required cluster certificates.</summary>
    public IPEndPoint? PeerApi { get; init; }
    public ClusterTls? PeerApiTls { get; init; }

    /// <summary>On the process that holds the CA key: where joiners with a join token get their certificate.</summary>
    public EnrollmentOptions? Enrollment { get; init; }
}

/// <summary>The HTTP surfaces of a gateway, each on its own listener, sharing one Kestrel server.</summary>
public static class GatewayHosting
{
    public static void AddFlotillaGateway(this WebApplicationBuilder builder, GatewayOptions options, GatewayInfo info)
    {
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(info);
        builder.Services.AddRouting();
        builder.Services.AddSingleton<ExecRegistry>();
        builder.Services.AddSingleton<Forwarding.NodeForwarder>();
        builder.Services.AddSingleton(sp => new Forwarding.CallerIdentity(sp.GetService<ClusterAccessLog>()));
        builder.Services.AddSingleton<IHijackHandler, AttachHijackHandler>();
        builder.Services.AddSingleton<IHijackHandler, ExecStartHijackHandler>();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            // Image imports and loads are archives of any size; they are streamed, never buffered.
            k.Limits.MaxRequestBodySize = null;
            // Registry blobs stream both ways: a few MiB in flight per connection keeps the socket busy
            // while the next MiB is hashed and written (upload) or read from disk (download). The 1 MiB /
            // 64 KiB defaults cap a 50 MB push or pull well below what the disk and loopback can do.
            k.Limits.MaxRequestBufferSize = 4 * 1024 * 1024;
            k.Limits.MaxResponseBufferSize = 4 * 1024 * 1024;
            k.Listen(options.DockerApi, listen =>
            {
                // TLS first: the hijack middleware reads the decrypted request.
                if (options.DockerApiTls is { } tls) ClusterApi.UseClusterTls(listen, tls);
                ConfigureDockerListener(listen, options.DockerApiTls);
            });
            if (options.PeerApi is { } peerApi && options.PeerApiTls is { } peerTls)
                k.Listen(peerApi, listen =>
                {
                    listen.Protocols = HttpProtocols.Http1;
                    ClusterApi.UseClusterTls(listen, peerTls);
                });
            if (options.DockerSocket is { } socket && DockerSocketFile.Prepare(socket))
                k.ListenUnixSocket(socket, listen => ConfigureDockerListener(listen, null));
            if (options.Enrollment is { } enrollment) EnrollmentEndpoint.Listen(k, enrollment);
            if (options.NativeApi is { } native) k.Listen(native);
            if (options.Registry is { } registry) k.Listen(registry, listen => listen.Protocols = HttpProtocols.Http1);
        });
    }

    private static void ConfigureDockerListener(ListenOptions listen, ClusterTls? clusterTls)
    {
        listen.Protocols = HttpProtocols.Http1;
        // Attach and exec start are taken over before Kestrel's HTTP layer (see HijackConnectionMiddleware).
        listen.Use(next =>
        {
            var services = listen.ApplicationServices;
            var middleware = new HijackConnectionMiddleware(next, services.GetServices<IHijackHandler>().ToList(),
                services.GetRequiredService<ILoggerFactory>().CreateLogger<HijackConnectionMiddleware>(), clusterTls, services.GetService<ClusterAccessLog>());
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
            if (options.DockerApiTls is { } tls) docker.UseMiddleware<ClusterApi.Authorization>(tls);
            docker.UseMiddleware<DockerApiMiddleware>(info);
            docker.UseRouting();
            docker.UseEndpoints(e =>
            {
                e.MapSystemEndpoints(info, queries);
                e.MapDistributionEndpoints();
                e.MapEventsEndpoint();
                e.MapImageEndpoints();
                e.MapContainerEndpoints();
                e.MapContainerStreamEndpoints();
                e.MapVolumeEndpoints();
                // A gateway with a peer listener serves blobs there (mutual TLS), not to its clients.
                if (options.PeerApi is null) e.MapPeerBlobEndpoints();
                e.MapFallback(c => JsonReply.ErrorAsync(c, StatusCodes.Status404NotFound, "page not found"));
            });
        });
        if (options.Enrollment is { } enrollment) EnrollmentEndpoint.Map(app, enrollment);
        if (options.PeerApi is { } peerEndpoint && options.PeerApiTls is { } peerTls)
        {
            app.MapWhen(c => c.Connection.LocalPort == peerEndpoint.Port, peer =>
            {
                peer.UseMiddleware<ClusterApi.Authorization>(peerTls);
                peer.UseRouting();
                peer.UseEndpoints(e =>
                {
                    e.MapPeerBlobEndpoints();
                    e.MapFallback(c => JsonReply.ErrorAsync(c, StatusCodes.Status404NotFound, "page not found"));
                });
            });
        }
        if (options.NativeApi is { } nativeEndpoint)
        {
            app.MapWhen(c => c.Connection.LocalPort == nativeEndpoint.Port, native =>
            {
                native.UseRouting();
                native.UseEndpoints(e =>
                {
                    e.MapNodesEndpoints(queries);
                    e.MapRegistryUsersEndpoints();
                    e.MapLedgerEndpoints();
                    e.MapRegistryGcEndpoints();
                    e.MapAuditEndpoints();
                    e.MapFallback(c => JsonReply.ErrorAsync(c, StatusCodes.Status404NotFound, $"no route for {c.Request.Method} {c.Request.Path}"));
                });
            });
        }
        if (options.Registry is { } registryEndpoint)
        {
            app.MapWhen(c => c.Connection.LocalPort == registryEndpoint.Port, registry =>
            {
                registry.UseMiddleware<RegistryHeadersMiddleware>();
                registry.UseMiddleware<Registry.Auth.RegistryAuthMiddleware>();
                registry.UseRouting();
                registry.UseEndpoints(e =>
                {
                    e.MapRegistryTokenEndpoint();
                    e.MapRegistryEndpoints();
                });
            });
        }
    }
}
