using Flotilla.Cluster.Queries;
using Flotilla.Gateway.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;

namespace Flotilla.Gateway.Native;

/// <summary>Flotilla's own API: <c>GET /api/nodes</c>.</summary>
public static class NodesEndpoints
{
    public static void MapNodesEndpoints(this IEndpointRouteBuilder app, ClusterQueries queries)
    {
        app.MapGet("/api/nodes", async context =>
        {
            var nodes = await queries.NodesAsync(context.RequestAborted);
            await JsonReply.WriteAsync(context, nodes.Select(NodeDto.From).ToList(), options: JsonReply.Native);
        });
    }
}

public sealed record NodeDto(
    string Name, string Status, string Hostname, string Address, IReadOnlyList<string> Roles, int Cpus, long MemoryBytes,
    string Kernel, string OciRuntime, IReadOnlyDictionary<string, string> Labels, DateTimeOffset JoinedAt,
    DateTimeOffset? LeftAt, string? LeftReason)
{
    public static NodeDto From(Flotilla.Cluster.Nodes.NodeView n) => new(n.Name, n.Status, n.Hostname, n.Address, n.Roles,
        n.Cpus, n.MemoryBytes, n.Kernel, n.OciRuntime, n.Labels, n.JoinedAt, n.LeftAt, n.LeftReason);
}
