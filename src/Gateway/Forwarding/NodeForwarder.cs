using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Flotilla.Cluster;
using Flotilla.Cluster.Hosting;
using Flotilla.Cluster.Nodes;
using Flotilla.Cluster.Queries;
using Flotilla.Cluster.Security;
using Flotilla.Contracts;
using Flotilla.Gateway.DockerApi;
using Flotilla.NodeRuntime.Containers;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Flotilla.Gateway.Forwarding;

/// <summary>
/// The data plane of a container lives on its node (logs, rootfs, conmon sockets, exec instances). This decides
/// whether a container-scoped request is served here or by the container's node, and forwards it there unchanged:
/// the node's own Docker API answers with exactly the local semantics, so no endpoint has a "remote" variant.
/// One pooled <see cref="SocketsHttpHandler"/> for all nodes; responses are streamed back with a flush per read
/// (logs -f, stats, archives).
/// </summary>
public sealed class NodeForwarder : IDisposable
{
    /// <summary>How long the gateway remembers which node an exec it proxied belongs to (Docker forgets execs too).</summary>
    private static readonly TimeSpan KeepRemoteExec = TimeSpan.FromHours(1);

    // Hop-by-hop headers (RFC 9110 7.6.1) and Host: the outgoing connection has its own. The browser headers were
    // judged by this gateway's guard against its allow-list; the node has none to judge them by.
    private static readonly HashSet<string> NotForwarded = new(StringComparer.OrdinalIgnoreCase)
    {
        "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
        "Transfer-Encoding", "Upgrade", "Host", "Origin", "Sec-Fetch-Site", "Sec-Fetch-Mode", "Sec-Fetch-Dest", "Sec-Fetch-User",
    };

    private readonly GatewayInfo _info;
    private readonly ClusterQueries _queries;
    private readonly bool _hasRuntime;
    private readonly ILogger<NodeForwarder> _logger;
    private readonly HttpMessageInvoker _client;
    private readonly ClusterTls? _tls;

    /// <summary>This process's cluster certificate, for hops that are not HTTP requests (hijack relays).</summary>
    public ClusterTls? Tls => _tls;
    private readonly ConcurrentDictionary<string, RemoteExec> _remoteExecs = new(StringComparer.Ordinal);

    public NodeForwarder(GatewayInfo info, ClusterQueries queries, IServiceProvider services, ILogger<NodeForwarder> logger)
    {
        _info = info;
        _queries = queries;
        _hasRuntime = services.GetService<NodeContainerRuntime>() is not null;
        _logger = logger;
        _tls = services.GetService<FlotillaClusterOptions>()?.Tls;
        var handler = new SocketsHttpHandler
        {
            UseProxy = false,
            UseCookies = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            ConnectTimeout = ConnectTimeout,
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(60),
            // Streams (logs -f, stats) may stay silent for long: no response timeout, the client's abort ends them.
        };
        // Nodes that registered an https endpoint require this process's cluster certificate and show one of the CA.
        ClusterHttps.Configure(handler, _tls);
        _client = new HttpMessageInvoker(handler, disposeHandler: true);
    }

    public static TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Marks a request a gateway forwarded (value: the forwarding process). A process that receives one for a container
    /// that is not its own refuses it rather than forwarding again: one hop, never a loop (a stale node table, a container
    /// that moved meanwhile).
    /// </summary>
    public const string ForwardedHeader = "X-Flotilla-Forwarded-By";

    /// <summary>The name of this process's node.</summary>
    public string LocalNode => _info.NodeName;

    /// <summary>Whether a container on <paramref name="node"/> is served by this process (a node with a runtime, and it is that node).</summary>
    public bool IsLocal(string node) => _hasRuntime && (node.Length == 0 || node == _info.NodeName);

    public static OperationRejectedException Unavailable(string node) =>
        new(RejectionCode.Unavailable, node.Length == 0 ? "the container is not placed on any node" : $"node {node} is not available");

    /// <summary>The node's Docker API <c>host:port</c>; a node that is down or never registered one is unavailable (503).</summary>
    public async Task<string> EndpointOfAsync(string node, CancellationToken cancellationToken)
    {
        if (node.Length == 0) throw Unavailable(node);
        var view = (await _queries.NodesAsync(cancellationToken)).FirstOrDefault(n => n.Name == node);
        if (view is null || view.Status != NodeStatus.Ready || view.ApiEndpoint.Length == 0) throw Unavailable(node);
        return view.ApiEndpoint;
    }

    /// <summary>Forwards the request when the container's node is another process; false when it is to be served here.</summary>
    public async Task<bool> TryForwardAsync(HttpContext context, string node)
    {
        if (IsLocal(node)) return false;
        if (context.Request.Headers.ContainsKey(ForwardedHeader)) throw Unavailable(node);
        await ForwardAsync(context, node);
        return true;
    }

    /// <summary>Sends the request as it came (method, original target with its version prefix, headers, body) to the node and streams the answer back.</summary>
    public async Task ForwardAsync(HttpContext context, string node)
    {
        try
        {
            using var response = await SendAsync(context, node);
            await CopyResponseAsync(context, response);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client left before the node answered (a long wait or follow): the upstream request is cancelled with it.
        }
    }

    /// <summary>
    /// <c>POST /containers/{id}/exec</c> for a container on another node: the exec instance is created (and kept) there;
    /// the gateway remembers its id so that start, inspect and resize find the node again.
    /// </summary>
    public async Task ForwardExecCreateAsync(HttpContext context, string node, string containerId)
    {
        if (context.Request.Headers.ContainsKey(ForwardedHeader)) throw Unavailable(node);
        using var response = await SendAsync(context, node);
        var body = await response.Content.ReadAsByteArrayAsync(context.RequestAborted);
        if (response.StatusCode == HttpStatusCode.Created)
        {
            try
            {
                using var json = JsonDocument.Parse(body);
                if (json.RootElement.TryGetProperty("Id", out var id) && id.GetString() is { Length: > 0 } execId)
                {
                    PruneRemoteExecs();
                    _remoteExecs[execId] = new RemoteExec(execId, node, containerId, DateTimeOffset.UtcNow);
                }
            }
            catch (JsonException e)
            {
                _logger.LogWarning("exec create on {Node} answered what is not JSON: {Message}", node, e.Message);
            }
        }
        await CopyResponseAsync(context, response, body);
    }

    /// <summary>An exec instance this gateway created on another node (exact id or a unique prefix, as Docker accepts).</summary>
    public RemoteExec? FindRemoteExec(string id)
    {
        if (_remoteExecs.TryGetValue(id, out var exact)) return exact;
        if (id.Length < 3) return null;
        var matches = _remoteExecs.Values.Where(e => e.Id.StartsWith(id, StringComparison.Ordinal)).Take(2).ToList();
        return matches.Count == 1 ? matches[0] : null;
    }

    /// <summary>How long the other nodes get to say whether they hold an exec this gateway never saw.</summary>
    private static readonly TimeSpan LocateExecTimeout = TimeSpan.FromSeconds(3);

    /// <summary>
    /// An exec on another node: one this gateway created, else one created through another gateway (or on the node
    /// directly), found by asking every other ready node for it (<c>GET /exec/{id}/json</c>) and then remembered.
    /// Null when no node holds it.
    /// </summary>
    public async Task<RemoteExec?> LocateRemoteExecAsync(string id, CancellationToken cancellationToken)
    {
        if (FindRemoteExec(id) is { } known) return known;
        if (id.Length < 3 || id.Length > 64 || !id.All(char.IsAsciiLetterOrDigit)) return null;
        var nodes = (await _queries.NodesAsync(cancellationToken))
            .Where(n => n.IsNode && n.Status == NodeStatus.Ready && n.ApiEndpoint.Length > 0 && !IsLocal(n.Name)).ToList();
        if (nodes.Count == 0) return null;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(LocateExecTimeout);
        var answers = await Task.WhenAll(nodes.Select(n => AskForExecAsync(n.Name, n.ApiEndpoint, id, timeout.Token)));
        var found = answers.Where(a => a is not null).ToList();
        if (found.Count != 1) return null; // none, or a prefix that is not unique across the cluster
        PruneRemoteExecs();
        _remoteExecs[found[0]!.Id] = found[0]!;
        return found[0];
    }

    private async Task<RemoteExec?> AskForExecAsync(string node, string endpoint, string id, CancellationToken cancellationToken)
    {
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, ClusterEndpoint.Parse(endpoint).Uri($"/exec/{Uri.EscapeDataString(id)}/json"));
            request.Headers.TryAddWithoutValidation(ForwardedHeader, _info.NodeName);
            using var response = await _client.SendAsync(request, cancellationToken);
            if (response.StatusCode != HttpStatusCode.OK) return null;
            using var json = JsonDocument.Parse(await response.Content.ReadAsByteArrayAsync(cancellationToken));
            return json.RootElement.TryGetProperty("ID", out var execId) && execId.GetString() is { Length: > 0 } full &&
                   json.RootElement.TryGetProperty("ContainerID", out var container) && container.GetString() is { } containerId
                ? new RemoteExec(full, node, containerId, DateTimeOffset.UtcNow)
                : null;
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or JsonException or IOException)
        {
            // A node that is slow or gone does not hold it as far as this lookup can tell.
            return null;
        }
    }

    /// <summary>
    /// <c>DELETE /volumes/{name}</c> on the node that holds the volume (removed with its container, or pruned, through
    /// this process): the data is there. True when the node removed it or had none; false when it refused or is unreachable.
    /// </summary>
    public async Task<bool> RemoveVolumeOnAsync(string node, string name, RequestOrigin origin, CancellationToken cancellationToken)
    {
        try
        {
            var endpoint = await EndpointOfAsync(node, cancellationToken);
            using var request = new HttpRequestMessage(HttpMethod.Delete, ClusterEndpoint.Parse(endpoint).Uri($"/volumes/{Uri.EscapeDataString(name)}"));
            request.Headers.TryAddWithoutValidation(ForwardedHeader, _info.NodeName);
            request.Headers.TryAddWithoutValidation(CallerIdentity.ForwardedForHeader, origin.User);
            request.Headers.TryAddWithoutValidation(DockerApiMiddleware.CorrelationHeader, origin.CorrelationId);
            using var response = await _client.SendAsync(request, cancellationToken);
            return response.IsSuccessStatusCode || response.StatusCode == HttpStatusCode.NotFound;
        }
        catch (Exception e) when (e is HttpRequestException or OperationRejectedException or IOException ||
                                  (e is OperationCanceledException && !cancellationToken.IsCancellationRequested))
        {
            _logger.LogInformation("removing volume {Volume} on node {Node}: {Message}", name, node, e.Message);
            return false;
        }
    }

    private void PruneRemoteExecs()
    {
        var cutoff = DateTimeOffset.UtcNow - KeepRemoteExec;
        foreach (var (id, exec) in _remoteExecs)
            if (exec.CreatedAt < cutoff) _remoteExecs.TryRemove(id, out _);
    }

    private async Task<HttpResponseMessage> SendAsync(HttpContext context, string node)
    {
        var endpoint = await EndpointOfAsync(node, context.RequestAborted);
        using var request = BuildRequest(context, endpoint);
        try
        {
            // HttpMessageInvoker never buffers the content: this returns once the headers are in.
            return await _client.SendAsync(request, context.RequestAborted);
        }
        catch (HttpRequestException e) when (!context.RequestAborted.IsCancellationRequested)
        {
            _logger.LogInformation("node {Node} at {Endpoint} did not answer {Method} {Path}: {Message}", node, endpoint,
                context.Request.Method, context.Request.Path, e.Message);
            throw Unavailable(node);
        }
        catch (OperationCanceledException) when (!context.RequestAborted.IsCancellationRequested)
        {
            // The connect timeout.
            throw Unavailable(node);
        }
    }

    /// <summary>The original request target: the Docker API middleware has stripped the version prefix from <c>Request.Path</c>.</summary>
    public static string OriginalTarget(HttpContext context) =>
        context.Features.Get<IHttpRequestFeature>()?.RawTarget is { Length: > 0 } raw && raw[0] == '/'
            ? raw
            : context.Request.PathBase + context.Request.Path + context.Request.QueryString;

    private HttpRequestMessage BuildRequest(HttpContext context, string endpoint)
    {
        var incoming = context.Request;
        var request = new HttpRequestMessage(new HttpMethod(incoming.Method), ClusterEndpoint.Parse(endpoint).Uri(OriginalTarget(context)))
        {
            Version = HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        var hasBody = incoming.ContentLength is > 0 || incoming.Headers.TransferEncoding.Count > 0;
        if (hasBody)
        {
            request.Content = new StreamContent(incoming.Body, 64 * 1024);
            if (incoming.ContentLength is { } length) request.Content.Headers.ContentLength = length;
        }
        foreach (var (name, values) in incoming.Headers)
        {
            if (NotForwarded.Contains(name) || name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase)) continue;
            if (name.StartsWith("Content-", StringComparison.OrdinalIgnoreCase))
            {
                request.Content?.Headers.TryAddWithoutValidation(name, values.ToArray());
                continue;
            }
            request.Headers.TryAddWithoutValidation(name, values.ToArray());
        }
        request.Headers.Remove(CallerIdentity.ForwardedForHeader);
        request.Headers.TryAddWithoutValidation(ForwardedHeader, _info.NodeName);
        if (context.Items[DockerApiMiddleware.OriginItem] is RequestOrigin origin)
        {
            // The node records the caller this gateway saw, not the gateway (see CallerIdentity)...
            request.Headers.TryAddWithoutValidation(CallerIdentity.ForwardedForHeader, origin.User);
            // ...and its events in the same story as this request (believed from a cluster process only, as the caller;
            // the client's own X-Request-Id goes along unchanged and becomes the causation id there too).
            request.Headers.Remove(DockerApiMiddleware.CorrelationHeader);
            request.Headers.TryAddWithoutValidation(DockerApiMiddleware.CorrelationHeader, origin.CorrelationId);
        }
        return request;
    }

    private async Task CopyResponseAsync(HttpContext context, HttpResponseMessage response, byte[]? bufferedBody = null)
    {
        var outgoing = context.Response;
        outgoing.StatusCode = (int)response.StatusCode;
        foreach (var (name, values) in response.Headers.Concat(response.Content.Headers))
        {
            // This gateway's own request id stays: it is the one the client's story knows.
            if (NotForwarded.Contains(name) || name.Equals(DockerApiMiddleware.RequestIdHeader, StringComparison.OrdinalIgnoreCase) ||
                name.Equals(DockerApiMiddleware.CorrelationHeader, StringComparison.OrdinalIgnoreCase)) continue;
            outgoing.Headers[name] = values.ToArray();
        }
        if (bufferedBody is not null) outgoing.ContentLength = bufferedBody.Length;
        var aborted = context.RequestAborted;
        // Headers on the wire now: the CLI waits for them before it goes on (e.g. to attach or start).
        await outgoing.StartAsync(aborted);
        await outgoing.Body.FlushAsync(aborted);
        if (HttpMethods.IsHead(context.Request.Method)) return;
        if (bufferedBody is not null)
        {
            await outgoing.Body.WriteAsync(bufferedBody, aborted);
            return;
        }

        var buffer = ArrayPool<byte>.Shared.Rent(64 * 1024);
        try
        {
            await using var body = await response.Content.ReadAsStreamAsync(aborted);
            int read;
            while ((read = await body.ReadAsync(buffer, aborted)) > 0)
            {
                await outgoing.Body.WriteAsync(buffer.AsMemory(0, read), aborted);
                await outgoing.Body.FlushAsync(aborted);
            }
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            // The client went away: disposing the response closes the upstream request too.
        }
        catch (Exception e) when (e is IOException or HttpRequestException or SocketException)
        {
            // The node went away mid-stream: end the client's response as broken, not as complete.
            _logger.LogInformation("stream from node for {Method} {Path} broke: {Message}", context.Request.Method, context.Request.Path, e.Message);
            context.Abort();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    public void Dispose() => _client.Dispose();
}

/// <summary>An exec instance that lives on another node.</summary>
public sealed record RemoteExec(string Id, string Node, string ContainerId, DateTimeOffset CreatedAt);
