using Flotilla.Cluster;
using Flotilla.Cluster.Nodes;
using Flotilla.Cluster.Queries;
using Flotilla.Contracts;
using Flotilla.Gateway.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Flotilla.Gateway.Native;

/// <summary>Flotilla's own API: <c>GET /api/nodes</c>, <c>POST /api/nodes/{name}/drain|activate</c>.</summary>
public static class NodesEndpoints
{
    public static void MapNodesEndpoints(this IEndpointRouteBuilder app, ClusterQueries queries)
    {
        app.MapGet("/api/nodes", async context =>
        {
            var nodes = await queries.NodesAsync(context.RequestAborted);
            await JsonReply.WriteAsync(context, nodes.Select(NodeDto.From).ToList(), options: JsonReply.Native);
        });
        app.MapPost("/api/nodes/{name}/drain", (HttpContext context, string name, NodeService nodes) =>
            Availability(context, () => nodes.DrainAsync(name, Origin(context), context.RequestAborted)));
        app.MapPost("/api/nodes/{name}/activate", (HttpContext context, string name, NodeService nodes) =>
            Availability(context, () => nodes.ActivateAsync(name, Origin(context), context.RequestAborted)));
    }

    // The native API has no users of its own yet: changes are attributed to the local operator.
    private static RequestOrigin Origin(HttpContext context) => Listeners.NativeApiAuth.Origin(context);

    private static async Task Availability(HttpContext context, Func<Task<NodeView>> change)
    {
        try
        {
            var node = await change();
            await JsonReply.WriteAsync(context, NodeDto.From(node), options: JsonReply.Native);
        }
        catch (OperationRejectedException ex) when (!context.Response.HasStarted)
        {
            await JsonReply.ErrorAsync(context, (int)ex.Code, ex.Message);
        }
    }
}

public sealed record NodeDto(
    string Name, string Status, string Hostname, string Address, IReadOnlyList<string> Roles, int Cpus, long MemoryBytes,
    string Kernel, string OciRuntime, IReadOnlyDictionary<string, string> Labels, DateTimeOffset JoinedAt,
    DateTimeOffset? LeftAt, string? LeftReason, string Availability, string ApiEndpoint)
{
    public static NodeDto From(NodeView n) => new(n.Name, n.Status, n.Hostname, n.Address, n.Roles,
        n.Cpus, n.MemoryBytes, n.Kernel, n.OciRuntime, n.Labels, n.JoinedAt, n.LeftAt, n.LeftReason, n.Availability, n.ApiEndpoint);
}
