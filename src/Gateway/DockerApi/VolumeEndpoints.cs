using System.Text.Json;
using System.Text.Json.Nodes;
using Flotilla.Cluster;
using Flotilla.Cluster.Containers;
using Flotilla.Contracts;
using Flotilla.Gateway.Http;
using Flotilla.NodeRuntime.Volumes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Flotilla.Gateway.DockerApi;

/// <summary><c>docker volume create/ls/inspect/rm/prune</c> over the node's local volumes.</summary>
public static class VolumeEndpoints
{
    public static void MapVolumeEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapPost("/volumes/create", CreateAsync);
        app.MapGet("/volumes", ListAsync);
        app.MapGet("/volumes/{name}", InspectAsync);
        app.MapDelete("/volumes/{name}", RemoveAsync);
        app.MapPost("/volumes/prune", PruneAsync);
    }

    private static VolumeStore Volumes(HttpContext c) => c.RequestServices.GetRequiredService<VolumeStore>();

    private static object Describe(VolumeStore store, string name, DateTimeOffset created) => new
    {
        Name = name,
        Driver = "local",
        Mountpoint = store.MountpointOf(name),
        CreatedAt = created.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ"),
        Labels = new Dictionary<string, string>(),
        Scope = "local",
        Options = new Dictionary<string, string>(),
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
        Volumes(context).Ensure(name);
        await JsonReply.WriteAsync(context, Describe(Volumes(context), name, DateTimeOffset.UtcNow), StatusCodes.Status201Created);
    });

    private static Task ListAsync(HttpContext context) => ContainerEndpoints.Guarded(context, async () =>
    {
        var store = Volumes(context);
        await JsonReply.WriteAsync(context, new
        {
            Volumes = store.List().Select(v => Describe(store, v.Name, v.Created)).ToList(),
            Warnings = Array.Empty<string>(),
        });
    });

    private static Task InspectAsync(HttpContext context, string name) => ContainerEndpoints.Guarded(context, async () =>
    {
        var store = Volumes(context);
        var found = store.List().FirstOrDefault(v => v.Name == name);
        if (found.Name is null) throw new OperationRejectedException(RejectionCode.NotFound, $"get {name}: no such volume");
        await JsonReply.WriteAsync(context, Describe(store, found.Name, found.Created));
    });

    private static Task RemoveAsync(HttpContext context, string name) => ContainerEndpoints.Guarded(context, async () =>
    {
        var store = Volumes(context);
        if (!store.Exists(name)) throw new OperationRejectedException(RejectionCode.NotFound, $"get {name}: no such volume");
        var users = (await context.RequestServices.GetRequiredService<ContainerService>().ListAsync(context.RequestAborted))
            .Where(c => c.Mounts.Any(m => m.VolumeName == name)).ToList();
        if (users.Count > 0)
            throw new OperationRejectedException(RejectionCode.Conflict,
                $"remove {name}: volume is in use - [{string.Join(", ", users.Select(u => u.ContainerId))}]");
        store.Remove(name);
        context.Response.StatusCode = StatusCodes.Status204NoContent;
    });

    private static Task PruneAsync(HttpContext context) => ContainerEndpoints.Guarded(context, async () =>
    {
        var store = Volumes(context);
        var used = (await context.RequestServices.GetRequiredService<ContainerService>().ListAsync(context.RequestAborted))
            .SelectMany(c => c.Mounts).Select(m => m.VolumeName).ToHashSet();
        // Docker 23+ prunes anonymous volumes only, unless all=true.
        var all = context.Request.Query["filters"].ToString().Contains("\"all\"");
        var deleted = store.List().Where(v => !used.Contains(v.Name) && (all || v.Name.Length == 64)).Select(v => v.Name).ToList();
        foreach (var v in deleted) store.Remove(v);
        await JsonReply.WriteAsync(context, new { VolumesDeleted = deleted.Count == 0 ? null : deleted, SpaceReclaimed = 0 });
    });
}
