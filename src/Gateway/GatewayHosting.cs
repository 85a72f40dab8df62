using System.Net;
using Flotilla.Cluster.Queries;
using Flotilla.Cluster.Security;
using Flotilla.Contracts.Access;
using Flotilla.Contracts.Security;
using Flotilla.Gateway.DockerApi;
using Flotilla.Gateway.Hijack;
using Flotilla.Gateway.Http;
using Flotilla.Gateway.Listeners;
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
/// <param name="DockerApi">The Docker API on TCP, or null for the unix socket only (<c>flotilla up</c>'s default, as dockerd's).</param>
/// <param name="DockerSocket">A unix socket for the Docker API (as dockerd's <c>/var/run/docker.sock</c>), or null.</param>
/// <remarks>A node process serves only the Docker API (for its own containers); the native API and registry belong to gateways.</remarks>
public sealed record GatewayOptions(IPEndPoint? DockerApi, IPEndPoint? NativeApi, IPEndPoint? Registry = null, string? DockerSocket = null)
{
    /// <summary>TLS of the TCP client listeners (<c>--tlscert/--tlskey</c>, <c>--tlsverify --tlscacert</c> for the Docker API), or none.</summary>
    public ClientTls? Tls { get; init; }

    /// <summary>Which browser origins and host names the client listeners accept.</summary>
    public BrowserPolicy Browsers { get; init; } = BrowserPolicy.Default;

    /// <summary>
    /// A node's own Docker API is for the cluster only: HTTPS with required client certificates of the cluster CA
    /// (<see cref="ClusterApi"/>). Null: plain HTTP (the all-in-one process, whose Docker API is the client's; a node
    /// started with <c>--insecure-node-api</c>).
    /// </summary>
    public ClusterTls? DockerApiTls { get; init; }

    /// <summary>A gateway's listener for its peers (image blobs imported through it), HTTPS with required cluster certificates.</summary>
    public IPEndPoint? PeerApi { get; init; }
    public ClusterTls? PeerApiTls { get; init; }

    /// <summary>
    /// Whether images imported, loaded or pulled here can reach the other hosts: true for a node (its node API) and the
    /// all-in-one; false for a gateway without a peer listener (<c>--api none</c>), which refuses them rather than keep
    /// content no node could fetch (its Docker API is for clients, often on loopback, never for peers).
    /// </summary>
    public bool KeepsImages { get; init; } = true;

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
        builder.Services.AddSingleton<StreamsEndOnShutdown>();
        builder.Services.AddSingleton<IHijackHandler, AttachHijackHandler>();
        builder.Services.AddSingleton<IHijackHandler, ExecStartHijackHandler>();
        var ownSocket = new OwnDockerSocket();
        var tls = options.Tls?.Load();
        builder.Services.AddSingleton(ownSocket);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            // Image imports and loads are archives of any size; they are streamed, never buffered. Every other
            // endpoint gets its own cap per request (RequestBodyLimits).
            k.Limits.MaxRequestBodySize = null;
            // Registry blobs stream both ways: a few MiB in flight per connection keeps the socket busy
            // while the next MiB is hashed and written (upload) or read from disk (download). The 1 MiB /
            // 64 KiB defaults cap a 50 MB push or pull well below what the disk and loopback can do.
            k.Limits.MaxRequestBufferSize = 4 * 1024 * 1024;
            k.Limits.MaxResponseBufferSize = 4 * 1024 * 1024;
            if (options.DockerApi is { } dockerApi)
                k.Listen(dockerApi, listen =>
                {
                    // A node's API: cluster TLS first, so the hijack middleware reads the decrypted request.
                    if (options.DockerApiTls is { } clusterTls) ClusterApi.UseClusterTls(listen, clusterTls, ClusterSurfaces.NodeApi);
                    ConfigureDockerListener(listen, ClientListener.DockerApi, options.DockerApiTls is null ? tls : null, options.DockerApiTls);
                });
            if (options.PeerApi is { } peerApi && options.PeerApiTls is { } peerTls)
                k.Listen(peerApi, listen =>
                {
                    listen.Protocols = HttpProtocols.Http1;
                    ClientConnection.Tag(listen, ClientListener.PeerApi);
                    ClusterApi.UseClusterTls(listen, peerTls, ClusterSurfaces.PeerApi);
                });
            if (options.DockerSocket is { } socket && DockerSocketFile.Prepare(socket))
            {
                k.ListenUnixSocket(socket, listen => ConfigureDockerListener(listen, ClientListener.DockerSocket, null, null));
                ownSocket.Path = socket;
            }
            if (options.Enrollment is { } enrollment) EnrollmentEndpoint.Listen(k, enrollment);
            if (options.NativeApi is { } native)
                k.Listen(native, listen =>
                {
                    ClientConnection.Tag(listen, ClientListener.NativeApi);
                    tls?.Apply(listen, verifyClients: false);
                });
            if (options.Registry is { } registry)
                k.Listen(registry, listen =>
                {
                    listen.Protocols = HttpProtocols.Http1;
                    ClientConnection.Tag(listen, ClientListener.Registry);
                    tls?.Apply(listen, verifyClients: false);
                });
        });
        if (options.NativeApi is not null) builder.Services.AddSingleton(NativeApiTokens.Ensure(info.DataRoot));
    }

    private static void ConfigureDockerListener(ListenOptions listen, ClientListener listener, LoadedClientTls? tls, ClusterTls? clusterTls)
    {
        listen.Protocols = HttpProtocols.Http1;
        ClientConnection.Tag(listen, listener);
        tls?.Apply(listen, verifyClients: tls.ClientAuthorities is not null);
        // Attach and exec start are taken over before Kestrel's HTTP layer (see HijackConnectionMiddleware).
        listen.Use(next =>
        {
            var services = listen.ApplicationServices;
            var middleware = new HijackConnectionMiddleware(next, services.GetServices<IHijackHandler>().ToList(),
                services.GetRequiredService<ILoggerFactory>().CreateLogger<HijackConnectionMiddleware>(),
                services.GetRequiredService<GatewayOptions>().Browsers, services.GetRequiredService<Cluster.Audit.ApiAccessLog>(),
                services.GetRequiredService<StreamsEndOnShutdown>(), clusterTls, services.GetService<ClusterAccessLog>());
            return middleware.OnConnectedAsync;
        });
    }

    public static void MapFlotillaGateway(this WebApplication app)
    {
        var options = app.Services.GetRequiredService<GatewayOptions>();
        var info = app.Services.GetRequiredService<GatewayInfo>();
        var queries = app.Services.GetRequiredService<ClusterQueries>();
        // Kestrel makes the socket file when it starts listening; only then can it be restricted.
        app.Lifetime.ApplicationStarted.Register(() =>
        {
            if (app.Services.GetRequiredService<OwnDockerSocket>().Path is { } socket) DockerSocketFile.Restrict(socket);
        });

        app.Use(StreamsEndOnShutdown.Middleware(app.Services.GetRequiredService<StreamsEndOnShutdown>()));
        // Attach or exec start on a reused connection: handed back to HijackConnectionMiddleware.
        app.Use(TakeoverMiddleware.Create());

        // Each connection carries the listener that took it (two listeners may share a port number on different addresses).
        bool IsDockerApi(HttpContext c) => ClientConnection.ListenerOf(c) is ClientListener.DockerApi or ClientListener.DockerSocket;
        app.MapWhen(IsDockerApi, docker =>
        {
            if (options.DockerApiTls is { } clusterTls) docker.UseMiddleware<ClusterApi.Authorization>(clusterTls);
            docker.UseMiddleware<ClientRequestGuard>(ClientListener.DockerApi, options.Browsers);
            docker.UseMiddleware<DockerApiMiddleware>(info);
            docker.Use(RequestBodyLimits.Middleware(RequestBodyLimits.DockerApi, (c, message) => JsonReply.ErrorAsync(c, StatusCodes.Status413PayloadTooLarge, message)));
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
        if (options.PeerApiTls is { } peerTls)
        {
            app.MapWhen(c => ClientConnection.ListenerOf(c) == ClientListener.PeerApi, peer =>
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
        if (options.NativeApi is not null)
        {
            app.MapWhen(c => ClientConnection.ListenerOf(c) == ClientListener.NativeApi, native =>
            {
                native.UseMiddleware<ClientRequestGuard>(ClientListener.NativeApi, options.Browsers);
                native.UseMiddleware<NativeApiAuth>();
                native.Use(RequestBodyLimits.Middleware(RequestBodyLimits.NativeApi, (c, message) => JsonReply.ErrorAsync(c, StatusCodes.Status413PayloadTooLarge, message)));
                native.UseRouting();
                native.UseEndpoints(e =>
                {
                    e.MapNodesEndpoints(queries);
                    e.MapRegistryUsersEndpoints();
                    e.MapRegistryTokenKeyEndpoints();
                    e.MapLedgerEndpoints();
                    e.MapRegistryGcEndpoints();
                    e.MapAuditEndpoints();
                    e.MapFallback(c => JsonReply.ErrorAsync(c, StatusCodes.Status404NotFound, $"no route for {c.Request.Method} {c.Request.Path}"));
                });
            });
        }
        if (options.Registry is not null)
        {
            app.MapWhen(c => ClientConnection.ListenerOf(c) == ClientListener.Registry, registry =>
            {
                registry.UseMiddleware<RegistryHeadersMiddleware>();
                registry.UseMiddleware<ClientRequestGuard>(ClientListener.Registry, options.Browsers);
                registry.Use(RequestBodyLimits.Middleware(RequestBodyLimits.Registry,
                    (c, message) => RegistryErrors.WriteAsync(c, Contracts.Registry.RegistryErrorCodes.SizeInvalid, message, null, StatusCodes.Status413PayloadTooLarge)));
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

/// <summary>The Docker API socket this process listens on (null when none, or when another daemon owns the path).</summary>
public sealed class OwnDockerSocket
{
    public string? Path { get; internal set; }
}
