using System.Text.Json;
using System.Text.Json.Nodes;
using Flotilla.Cluster;
using Flotilla.Cluster.Containers;
using Flotilla.Cluster.Nodes;
using Flotilla.Cluster.Queries;
using Flotilla.Cluster.Scheduling;
using Flotilla.Cluster.Volumes;
using Flotilla.Contracts;
using Flotilla.Contracts.Volumes;
using Flotilla.Gateway.Forwarding;
using Flotilla.Gateway.Http;
using Flotilla.NodeRuntime.Volumes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Flotilla.Gateway.DockerApi;

/// <summary>
/// <c>docker volume create/ls/inspect/rm/prune</c>. A local volume belongs to one node, its home, recorded in the
/// <see cref="VolumeRegistry"/>: <c>create</c> picks it (<c>--opt node=NAME</c>, else the scheduler) and records it;
/// the directory is made on that node, at once when that is this process, else when the first container using the
/// volume starts there. A gateway keeps no volume data. Removing one goes to its node.
/// </summary>
public static class VolumeEndpoints
{
    /// <summary>The one driver option Flotilla's local driver takes: the node to create the volume on.</summary>
    public const string NodeOption = "node";

    public static void MapVolumeEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapPost("/volumes/create", CreateAsync);
        app.MapGet("/volumes", ListAsync);
        app.MapGet("/volumes/{name}", InspectAsync);
        app.MapDelete("/volumes/{name}", RemoveAsync);
        app.MapPost("/volumes/prune", PruneAsync);
    }

    private static VolumeRegistry Registry(HttpContext c) => c.RequestServices.GetRequiredService<VolumeRegistry>();

    /// <summary>This process's own volume directory: null on a gateway, which holds none.</summary>
    private static VolumeStore? LocalStore(HttpContext c) => c.RequestServices.GetService<VolumeStore>();

    private static NodeForwarder Forwarder(HttpContext c) => c.RequestServices.GetRequiredService<NodeForwarder>();

    private static RequestOrigin Origin(HttpContext c) => (RequestOrigin)c.Items[DockerApiMiddleware.OriginItem]!;

    private static async Task<Dictionary<string, NodeView>> NodesAsync(HttpContext c) =>
        (await c.RequestServices.GetRequiredService<ClusterQueries>().NodesAsync(c.RequestAborted)).ToDictionary(n => n.Name);

    /// <summary>Docker's volume; <c>Status</c> (the driver's own details) says which node holds it and how it was chosen.</summary>
    private static object Describe(VolumeView v, NodeView? node) => new
    {
        v.Name,
        Driver = "local",
        Mountpoint = node is { VolumeRoot.Length: > 0 } ? VolumeStore.MountpointUnder(node.VolumeRoot, v.Name) : "",
        CreatedAt = v.CreatedAt.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ"),
        Labels = v.Labels,
        Scope = "local",
        Options = v.Options,
        Status = new Dictionary<string, string>
        {
            ["Node"] = v.Node,
            ["NodeStatus"] = node?.Status ?? "unknown",
            ["Placement"] = v.Reason,
        },
    };

    private static Dictionary<string, string> StringMap(JsonNode? node, string what) => node switch
    {
        null => [],
        JsonObject o => o.ToDictionary(p => p.Key, p => p.Value?.ToString() ?? ""),
        _ => throw new FormatException($"{what} must be an object of strings"),
    };

    private static Task CreateAsync(HttpContext context) => ContainerEndpoints.Guarded(context, async () =>
    {
        var body = context.Request.ContentLength is > 0
            ? await JsonSerializer.DeserializeAsync<JsonObject>(context.Request.Body, cancellationToken: context.RequestAborted) ?? []
            : [];
        var name = body["Name"]?.ToString();
        if (string.IsNullOrEmpty(name)) name = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        if (!ContainerNames.IsValid(name))
            throw new OperationRejectedException(RejectionCode.InvalidArgument,
                $"create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path");
        var driver = body["Driver"]?.ToString();
        if (driver is { Length: > 0 } and not "local")
            throw new OperationRejectedException(RejectionCode.NotFound, $"plugin \"{driver}\" not found");
        var options = StringMap(body["DriverOpts"], "DriverOpts");
        foreach (var key in options.Keys.Where(k => k != NodeOption))
            throw new OperationRejectedException(RejectionCode.InvalidArgument,
                $"create {name}: volume option \"{key}\" is not supported: Flotilla's local driver takes only \"{NodeOption}\" (the node to create the volume on)");
        var labels = StringMap(body["Labels"], "Labels");
        var wanted = options.GetValueOrDefault(NodeOption);

        var registry = Registry(context);
        var volume = await registry.GetAsync(name, context.RequestAborted);
        if (volume is null)
        {
            var (node, reason) = await ChooseNodeAsync(context, name, wanted);
            volume = await registry.CreateAsync(new VolumeCreated(name, node, labels, options, reason, DateTimeOffset.UtcNow), Origin(context), context.RequestAborted);
        }
        if (wanted is not null && volume.Node != wanted)
            throw new OperationRejectedException(RejectionCode.Conflict, $"create {name}: volume already exists on node {volume.Node}");
        if (Forwarder(context).IsLocal(volume.Node)) LocalStore(context)?.Ensure(name);
        var nodes = await NodesAsync(context);
        await JsonReply.WriteAsync(context, Describe(volume, nodes.GetValueOrDefault(volume.Node)), StatusCodes.Status201Created);
    });

    /// <summary>The node named by <c>--opt node=</c> (it must be a ready node), else the one the scheduler would place a container on.</summary>
    private static async Task<(string Node, string Reason)> ChooseNodeAsync(HttpContext context, string volume, string? wanted)
    {
        var placement = context.RequestServices.GetRequiredService<PlacementService>();
        var id = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        PlacementRequest request = new(0, 0, wanted is null ? [] : [$"node=={wanted}"], null);
        try
        {
            var decision = await placement.PlaceAsync(id, request, context.RequestAborted);
            return (decision.Node, wanted is null ? $"scheduler: {decision.Reason}" : $"--opt {NodeOption}={wanted}");
        }
        catch (OperationRejectedException e)
        {
            throw new OperationRejectedException(e.Code, $"create {volume}: no node for the volume: {e.Message}");
        }
        finally
        {
            placement.Release(id); // the volume takes no container's place
        }
    }

    private static Task ListAsync(HttpContext context) => ContainerEndpoints.Guarded(context, async () =>
    {
        var volumes = await Registry(context).ListAsync(context.RequestAborted);
        if (await AdoptUnrecordedAsync(context, volumes)) volumes = await Registry(context).ListAsync(context.RequestAborted);
        var nodes = await NodesAsync(context);
        await JsonReply.WriteAsync(context, new
        {
            Volumes = volumes.Select(v => Describe(v, nodes.GetValueOrDefault(v.Node))).ToList(),
            Warnings = Array.Empty<string>(),
        });
    });

    /// <summary>
    /// Volumes in this node's data directory that no record names (made by a Flotilla that did not record volumes):
    /// recorded as this node's. True when any was.
    /// </summary>
    private static async Task<bool> AdoptUnrecordedAsync(HttpContext context, IReadOnlyList<VolumeView> recorded)
    {
        var store = LocalStore(context);
        var forwarder = Forwarder(context);
        if (store is null || !forwarder.IsLocal(forwarder.LocalNode)) return false;
        var known = recorded.Select(v => v.Name).ToHashSet();
        var adopted = false;
        foreach (var (name, created) in store.List().Where(v => !known.Contains(v.Name) && ContainerNames.IsValid(v.Name)))
        {
            await Registry(context).CreateAsync(new VolumeCreated(name, forwarder.LocalNode, new Dictionary<string, string>(),
                new Dictionary<string, string>(), $"found in the data directory of node {forwarder.LocalNode}", created), RequestOrigin.System(), context.RequestAborted);
            adopted = true;
        }
        return adopted;
    }

    private static Task InspectAsync(HttpContext context, string name) => ContainerEndpoints.Guarded(context, async () =>
    {
        var volume = await Registry(context).GetAsync(name, context.RequestAborted)
            ?? throw new OperationRejectedException(RejectionCode.NotFound, $"get {name}: no such volume");
        var nodes = await NodesAsync(context);
        await JsonReply.WriteAsync(context, Describe(volume, nodes.GetValueOrDefault(volume.Node)));
    });

    private static Task RemoveAsync(HttpContext context, string name) => ContainerEndpoints.Guarded(context, async () =>
    {
        var volume = await Registry(context).GetAsync(name, context.RequestAborted)
            ?? throw new OperationRejectedException(RejectionCode.NotFound, $"get {name}: no such volume");
        var users = (await context.RequestServices.GetRequiredService<ContainerService>().ListAsync(context.RequestAborted))
            .Where(c => c.Mounts.Any(m => m.VolumeName == name)).ToList();
        if (users.Count > 0)
            throw new OperationRejectedException(RejectionCode.Conflict,
                $"remove {name}: volume is in use - [{string.Join(", ", users.Select(u => u.ContainerId))}]");
        // The data is on the volume's node: that node removes it (and records it), or nobody does.
        if (await Forwarder(context).TryForwardAsync(context, volume.Node)) return;
        await RemoveHereAsync(context, name);
        context.Response.StatusCode = StatusCodes.Status204NoContent;
    });

    private static async Task RemoveHereAsync(HttpContext context, string name)
    {
        LocalStore(context)?.Remove(name);
        await Registry(context).RemoveAsync(name, Origin(context), context.RequestAborted);
    }

    /// <summary>Removes a volume (a container's anonymous one, or a pruned one) where it lives; false when its node could not.</summary>
    public static async Task<bool> RemoveWhereItLivesAsync(HttpContext context, string name)
    {
        var volume = await Registry(context).GetAsync(name, context.RequestAborted);
        if (volume is null) return false;
        var forwarder = Forwarder(context);
        if (!forwarder.IsLocal(volume.Node))
            return await forwarder.RemoveVolumeOnAsync(volume.Node, name, Origin(context), context.RequestAborted);
        await RemoveHereAsync(context, name);
        return true;
    }

    private static Task PruneAsync(HttpContext context) => ContainerEndpoints.Guarded(context, async () =>
    {
        var used = (await context.RequestServices.GetRequiredService<ContainerService>().ListAsync(context.RequestAborted))
            .SelectMany(c => c.Mounts).Select(m => m.VolumeName).ToHashSet();
        // Docker 23+ prunes anonymous volumes only, unless all=true.
        var all = context.Request.Query["filters"].ToString().Contains("\"all\"");
        var deleted = new List<string>();
        foreach (var v in await Registry(context).ListAsync(context.RequestAborted))
            if (!used.Contains(v.Name) && (all || v.Name.Length == 64) && await RemoveWhereItLivesAsync(context, v.Name))
                deleted.Add(v.Name);
        await JsonReply.WriteAsync(context, new { VolumesDeleted = deleted.Count == 0 ? null : deleted, SpaceReclaimed = 0 });
    });
}

/// <summary>
/// Where a new container may go, given its local volumes: to the node its existing volumes live on (a container
/// cannot use local volumes of two nodes); volumes it names that do not exist yet are made on the node it is placed on.
/// </summary>
public static class VolumePlacement
{
    /// <summary>The placement constraint its existing volumes imply (none or <c>node==HOME</c>), and the names still to make.</summary>
    public static async Task<(IReadOnlyList<string> Constraints, string? Home, IReadOnlyList<string> New)> ResolveAsync(
        VolumeRegistry registry, IEnumerable<string> names, CancellationToken cancellationToken)
    {
        var homes = new Dictionary<string, string>();
        var fresh = new List<string>();
        foreach (var name in names.Distinct())
        {
            if (await registry.GetAsync(name, cancellationToken) is { } v) homes[name] = v.Node;
            else fresh.Add(name);
        }
        var nodes = homes.Values.Distinct().ToList();
        if (nodes.Count > 1)
            throw new OperationRejectedException(RejectionCode.InvalidArgument,
                $"the volumes {string.Join(", ", homes.Select(h => $"{h.Key} (on node {h.Value})"))} live on different nodes: a container can use the local volumes of one node only");
        return nodes.Count == 1 ? ([$"node=={nodes[0]}"], nodes[0], fresh) : ([], null, fresh);
    }

    /// <summary>
    /// Records the new volumes on the node the container was placed on. Returns the error when one of them was made on
    /// another node meanwhile (a concurrent request won the name).
    /// </summary>
    public static async Task<string?> RecordAsync(VolumeRegistry registry, IReadOnlyList<string> fresh, string node, string containerId,
        RequestOrigin origin, CancellationToken cancellationToken)
    {
        foreach (var name in fresh)
        {
            var volume = await registry.CreateAsync(new VolumeCreated(name, node, new Dictionary<string, string>(), new Dictionary<string, string>(),
                $"made for container {containerId[..12]}, placed on {node}", DateTimeOffset.UtcNow), origin, cancellationToken);
            if (volume.Node != node) return $"volume {name} was just created on node {volume.Node}, not on {node} where this container was placed: try again";
        }
        return null;
    }
}
