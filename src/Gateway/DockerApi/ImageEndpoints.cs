using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Flotilla.Cluster;
using Flotilla.Cluster.Audit;
using Flotilla.Cluster.Images;
using Flotilla.Contracts;
using Flotilla.Contracts.Images;
using Flotilla.Gateway.Http;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Storage;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Flotilla.Gateway.DockerApi;

/// <summary>
/// Docker's image endpoints. Image names in paths may contain <c>/</c> and <c>:</c> (moby routes
/// <c>/images/{name:.*}/json</c>), so one catch-all route dispatches on the path's last segment.
/// </summary>
public static class ImageEndpoints
{
    public static void MapImageEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapGet("/images/json", ListAsync);
        app.MapPost("/images/create", CreateAsync);
        app.MapPost("/images/load", LoadAsync);
        app.MapGet("/images/get", SaveManyAsync);
        app.MapPost("/images/prune", PruneAsync);
        app.MapMethods("/images/{**rest}", [HttpMethods.Get, HttpMethods.Post, HttpMethods.Delete], DispatchAsync);
    }

    private static async Task DispatchAsync(HttpContext context)
    {
        var rest = (string)context.Request.RouteValues["rest"]!;
        var method = context.Request.Method;
        await Guarded(context, async () =>
        {
            if (HttpMethods.IsDelete(method)) await RemoveAsync(context, rest);
            else if (HttpMethods.IsGet(method) && rest.EndsWith("/json", StringComparison.Ordinal)) await InspectAsync(context, rest[..^5]);
            else if (HttpMethods.IsGet(method) && rest.EndsWith("/history", StringComparison.Ordinal)) await HistoryAsync(context, rest[..^8]);
            else if (HttpMethods.IsGet(method) && rest.EndsWith("/get", StringComparison.Ordinal)) await SaveAsync(context, [rest[..^4]]);
            else if (HttpMethods.IsPost(method) && rest.EndsWith("/tag", StringComparison.Ordinal)) await TagAsync(context, rest[..^4]);
            else if (HttpMethods.IsPost(method) && rest.EndsWith("/push", StringComparison.Ordinal)) await DistributionEndpoints.PushAsync(context, rest[..^5]);
            else await JsonReply.ErrorAsync(context, StatusCodes.Status404NotFound, "page not found");
        });
    }

    private static Task Guarded(HttpContext context, Func<Task> action) => DockerErrors.Guarded(context, action);

    private static ImageService Images(HttpContext c) => c.RequestServices.GetRequiredService<ImageService>();
    private static NodeImageStore Store(HttpContext c) => c.RequestServices.GetRequiredService<NodeImageStore>();
    private static RequestOrigin Origin(HttpContext c) => (RequestOrigin)c.Items[DockerApiMiddleware.OriginItem]!;

    /// <summary>
    /// Import, load and pull store the image here and register this process as where it lives; a gateway without a peer
    /// listener has no address a node could fetch it from, so it refuses before reading the body.
    /// </summary>
    internal static void RequireImageHome(HttpContext context, string verb)
    {
        if (context.RequestServices.GetRequiredService<GatewayOptions>().KeepsImages) return;
        throw new OperationRejectedException(RejectionCode.Unavailable,
            $"{verb} is not available on this gateway: it was started with --api none, so no node could fetch the image from it; " +
            "start the gateway with --api (its peer API, mutual TLS) or use another gateway");
    }

    /// <summary>Normalised form of a name as typed, or null when it is not a valid reference (it may still be an id).</summary>
    private static string? Normalize(string name) =>
        ImageReference.TryParse(name, out var reference) && reference is not null && reference.Digest is null
            ? (reference.Tag is null ? reference.WithTag(ImageReference.DefaultTag) : reference).ToString()
            : null;

    private static async Task<ImageView> ResolveAsync(HttpContext context, string name) =>
        await Images(context).FindAsync(Normalize(name), name, context.RequestAborted) ?? throw DockerErrors.NotFound($"No such image: {name}");

    private static string Familiar(string normalized) => ImageReference.Parse(normalized).FamiliarString;

    // GET /images/json
    private static Task ListAsync(HttpContext context) => Guarded(context, async () =>
    {
        var filters = DockerFilters.Parse(context.Request.Query["filters"]);
        filters.Validate("reference", "dangling", "label", "before", "since", "until");
        var all = await Images(context).ListAsync(context.RequestAborted);
        IEnumerable<ImageView> images = all;

        if (filters.Get("dangling") is [var dangling, ..])
        {
            if (dangling is not ("true" or "false" or "1" or "0")) throw new FormatException($"invalid filter 'dangling={dangling}'");
            var want = dangling is "true" or "1";
            images = images.Where(i => (i.RepoTags.Count == 0) == want);
        }
        var references = filters.Get("reference");
        if (references.Count > 0)
            images = images.Where(i => i.RepoTags.Any(t => references.Any(r => MatchesReference(r, t))));
        foreach (var label in filters.Get("label"))
        {
            var eq = label.IndexOf('=');
            images = eq < 0
                ? images.Where(i => i.Labels.ContainsKey(label))
                : images.Where(i => i.Labels.TryGetValue(label[..eq], out var v) && v == label[(eq + 1)..]);
        }
        foreach (var before in filters.Get("before"))
        {
            var pivot = await ResolveAsync(context, before);
            images = images.Where(i => i.Created < pivot.Created);
        }
        foreach (var since in filters.Get("since"))
        {
            var pivot = await ResolveAsync(context, since);
            images = images.Where(i => i.Created > pivot.Created);
        }

        var containers = await Images(context).ContainerCountsByImageAsync(context.RequestAborted);
        await JsonReply.WriteAsync(context, images.Select(i => new
        {
            Id = i.ImageId,
            ParentId = i.Parent ?? "",
            RepoTags = i.RepoTags.Select(Familiar).ToArray(),
            RepoDigests = i.RepoDigests.Select(Familiar).ToArray(),
            Created = i.Created.ToUnixTimeSeconds(),
            i.Size,
            SharedSize = -1L,
            VirtualSize = i.Size,
            Labels = i.Labels.Count == 0 ? null : i.Labels,
            Containers = containers.TryGetValue(i.ImageId, out var n) ? n : 0,
        }).ToList());
    });

    /// <summary>Docker matches the pattern against <c>name:tag</c> and against the name alone, in familiar form.</summary>
    private static bool MatchesReference(string pattern, string normalizedTag)
    {
        var familiar = Familiar(normalizedTag);
        var name = familiar[..familiar.LastIndexOf(':')];
        return DockerFilters.GlobMatch(pattern, familiar) || DockerFilters.GlobMatch(pattern, name);
    }

    // GET /images/{name}/json
    private static async Task InspectAsync(HttpContext context, string name)
    {
        var image = await ResolveAsync(context, name);
        await JsonReply.WriteAsync(context, InspectBody(image, Store(context)));
    }

    public static object InspectBody(ImageView image, NodeImageStore store)
    {
        var config = JsonNode.Parse(image.ConfigJson)?.AsObject() ?? [];
        var chain = OverlaySnapshotter.ChainIds(image.Layers.Select(l => Digest.Parse(l.DiffId)).ToList());
        var dirs = chain.Select(store.Snapshots.PathOf).ToList();
        return new
        {
            Id = image.ImageId,
            RepoTags = image.RepoTags.Select(Familiar).ToArray(),
            RepoDigests = image.RepoDigests.Select(Familiar).ToArray(),
            Parent = image.Parent ?? "",
            Comment = image.Comment ?? "",
            Created = image.Created.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.fffffffZ", CultureInfo.InvariantCulture),
            DockerVersion = config["docker_version"]?.GetValue<string>() ?? "",
            Author = image.Author ?? "",
            Config = config["config"] ?? new JsonObject(),
            image.Architecture,
            Variant = config["variant"]?.GetValue<string>(),
            image.Os,
            image.Size,
            VirtualSize = image.Size,
            GraphDriver = new
            {
                Name = "overlay2",
                Data = dirs.Count == 0 || dirs.Any(d => d is null)
                    ? null
                    : new Dictionary<string, string>
                    {
                        ["UpperDir"] = dirs[^1]!,
                        ["LowerDir"] = string.Join(':', dirs.Take(dirs.Count - 1).Reverse()),
                    },
            },
            RootFS = new { Type = "layers", Layers = image.Layers.Select(l => l.DiffId).ToArray() },
            Metadata = new { LastTagTime = image.LastTagTime?.UtcDateTime.ToString("O") ?? "0001-01-01T00:00:00Z" },
            Descriptor = image.ManifestDigest is null ? null : new { mediaType = MediaTypes.OciManifest, digest = image.ManifestDigest },
            Nodes = image.Nodes,
        };
    }

    // GET /images/{name}/history
    private static async Task HistoryAsync(HttpContext context, string name)
    {
        var image = await ResolveAsync(context, name);
        var config = OciJson.Parse<ImageConfigFile>(System.Text.Encoding.UTF8.GetBytes(image.ConfigJson), "image config");
        var history = config.History is { Count: > 0 } h
            ? h
            : image.Layers.Select(_ => new HistoryEntry { Created = image.Created }).ToList();
        var layerIndex = 0;
        var rows = new List<object>();
        foreach (var entry in history)
        {
            var empty = entry.EmptyLayer == true;
            var size = !empty && layerIndex < image.Layers.Count ? image.Layers[layerIndex++].Size : 0;
            rows.Add(new
            {
                Id = "<missing>",
                Created = (entry.Created ?? image.Created).ToUnixTimeSeconds(),
                CreatedBy = entry.CreatedBy ?? "",
                Tags = (string[]?)null,
                Size = size,
                Comment = entry.Comment ?? "",
            });
        }
        rows.Reverse();
        // The newest entry carries the image's id and tags, as Docker shows it.
        if (rows.Count > 0)
        {
            var top = JsonSerializer.SerializeToNode(rows[0])!.AsObject();
            top["Id"] = image.ImageId;
            top["Tags"] = new JsonArray(image.RepoTags.Select(t => (JsonNode)Familiar(t)).ToArray());
            rows[0] = top;
        }
        await JsonReply.WriteAsync(context, rows);
    }

    // POST /images/{name}/tag?repo=&tag=
    private static async Task TagAsync(HttpContext context, string name)
    {
        var image = await ResolveAsync(context, name);
        var repo = context.Request.Query["repo"].ToString();
        var tag = context.Request.Query["tag"].ToString();
        var reference = ImageReference.Parse(repo);
        if (reference.Digest is not null) throw new FormatException("refusing to create a tag with a digest reference");
        if (tag.Length > 0) reference = reference.WithTag(tag);
        else if (reference.Tag is null) reference = reference.WithTag(ImageReference.DefaultTag);
        await Images(context).TagAsync(image, reference.ToString(), Origin(context), context.RequestAborted);
        context.Response.StatusCode = StatusCodes.Status201Created;
    }

    // DELETE /images/{name}?force=&noprune=
    private static async Task RemoveAsync(HttpContext context, string name)
    {
        var image = await ResolveAsync(context, name);
        var normalized = Normalize(name);
        var byReference = normalized is not null && image.RepoTags.Contains(normalized) ? normalized : null;
        var items = await Images(context).RemoveAsync(image, byReference, name, Flag(context, "force"), pruneParents: !Flag(context, "noprune"),
            Origin(context), context.RequestAborted);
        if (items.Any(i => i.Deleted is not null)) await CollectGarbageAsync(context);
        await JsonReply.WriteAsync(context, items.Select(DeleteRecord).ToList());
    }

    private static object DeleteRecord(ImageDeleteItem item) =>
        item.Untagged is not null ? new { Untagged = Familiar(item.Untagged) } : new { Deleted = item.Deleted };

    // POST /images/prune?filters=
    private static Task PruneAsync(HttpContext context) => Guarded(context, async () =>
    {
        var filters = DockerFilters.Parse(context.Request.Query["filters"]);
        filters.Validate("dangling", "label", "until");
        var danglingOnly = filters.Get("dangling") switch
        {
            [] => true,
            ["true" or "1"] => true,
            ["false" or "0"] => false,
            var other => throw new FormatException($"invalid filter 'dangling={string.Join(',', other)}'"),
        };
        var until = filters.Get("until") switch
        {
            [] => (DateTimeOffset?)null,
            [var u] => AuditTime.Parse(u, DateTimeOffset.UtcNow),
            _ => throw new FormatException("more than one until filter specified"),
        };
        var labels = filters.Get("label");
        bool Matches(ImageView image) =>
            (until is null || image.Created <= until) && labels.All(label => label.IndexOf('=') is var eq && eq < 0
                ? image.Labels.ContainsKey(label)
                : image.Labels.TryGetValue(label[..eq], out var v) && v == label[(eq + 1)..]);

        var items = await Images(context).PruneAsync(danglingOnly, Matches, Origin(context), context.RequestAborted);
        var reclaimed = items.Any(i => i.Deleted is not null) ? await CollectGarbageAsync(context) : 0;
        await JsonReply.WriteAsync(context, new { ImagesDeleted = items.Count == 0 ? null : items.Select(DeleteRecord).ToList(), SpaceReclaimed = reclaimed });
    });

    /// <summary>
    /// Frees this node's layers and blobs that no remaining image or container uses. A container's layers come from its
    /// own record (the cluster's read model, any node), not from its image, which a forced <c>rmi</c> may have removed.
    /// </summary>
    private static async Task<long> CollectGarbageAsync(HttpContext context)
    {
        var images = await Images(context).ListAsync(context.RequestAborted);
        var containers = await context.RequestServices.GetRequiredService<Flotilla.Cluster.Containers.ContainerService>().ListAsync(context.RequestAborted);
        var byId = images.ToDictionary(i => i.ImageId);
        return Store(context).CollectGarbage(
            images.Select(i => (i.ImageId, i.ManifestDigest, (IReadOnlyList<string>)i.Layers.Select(l => l.DiffId).ToList())),
            // A view written before it carried the layers falls back to its image's.
            containers.Select(c => (c.ImageId, c.ImageLayers.Count > 0 || !byId.TryGetValue(c.ImageId, out var i)
                ? (IReadOnlyList<string>)c.ImageLayers
                : i.Layers.Select(l => l.DiffId).ToList())));
    }

    // POST /images/create?fromSrc=-&repo=&tag=&message=&changes=   (import; fromImage= is pull)
    private static Task CreateAsync(HttpContext context) => Guarded(context, async () =>
    {
        var query = context.Request.Query;
        var fromSrc = query["fromSrc"].ToString();
        if (query["fromImage"].ToString().Length > 0)
        {
            await DistributionEndpoints.PullAsync(context);
            return;
        }
        if (fromSrc != "-")
            throw new FormatException(fromSrc.Length == 0 ? "either fromImage or fromSrc is required" : "importing from a URL is not supported: use 'docker import -' with the file");
        RequireImageHome(context, "docker import");

        var references = new List<string>();
        var repo = query["repo"].ToString();
        if (repo.Length > 0)
        {
            var reference = ImageReference.Parse(repo);
            if (reference.Digest is not null) throw new FormatException("cannot import digest reference");
            var tag = query["tag"].ToString();
            reference = tag.Length > 0 ? reference.WithTag(tag) : reference.Tag is null ? reference.WithTag(ImageReference.DefaultTag) : reference;
            references.Add(reference.ToString());
        }
        var changes = query["changes"].Where(c => !string.IsNullOrWhiteSpace(c)).Select(c => c!).ToList();
        var message = query["message"].ToString();
        var options = new ImportOptions { Changes = changes, Message = message.Length > 0 ? message : "Imported from -" };
        // Validate the changes before reading a possibly large body.
        DockerfileChange.Apply(null, changes);

        var store = Store(context);
        using var lease = store.BeginWrite();
        var loaded = await store.ImportAsync(context.Request.Body, options, context.RequestAborted);
        await store.UnpackAsync(loaded.Layers, context.RequestAborted);
        var info = context.RequestServices.GetRequiredService<GatewayInfo>();
        var content = await store.DescribeAsync(loaded, context.RequestAborted);
        await Images(context).RegisterAsync(new RegisterImage(loaded.ImageId.ToString(), ImageSource.Imported, content, info.NodeName,
            options.Message, references, Origin(context)), context.RequestAborted);

        var stream = new JsonMessageStream(context.Response);
        await stream.StatusAsync(loaded.ImageId.ToString());
    });

    // POST /images/load?quiet=
    private static Task LoadAsync(HttpContext context) => Guarded(context, async () =>
    {
        RequireImageHome(context, "docker load");
        var store = Store(context);
        using var lease = store.BeginWrite();
        var info = context.RequestServices.GetRequiredService<GatewayInfo>();
        var loaded = await store.LoadAsync(context.Request.Body, context.RequestAborted);
        foreach (var image in loaded) await store.UnpackAsync(image.Layers, context.RequestAborted);

        var stream = new JsonMessageStream(context.Response);
        var quiet = Flag(context, "quiet");
        foreach (var image in loaded)
        {
            var content = await store.DescribeAsync(image, context.RequestAborted);
            await Images(context).RegisterAsync(new RegisterImage(image.ImageId.ToString(), ImageSource.Loaded, content, info.NodeName,
                null, image.RepoTags, Origin(context)), context.RequestAborted);
            if (!quiet)
                foreach (var layer in image.Layers)
                    await stream.StatusAsync("Loading layer", layer.Digest.Short, new ProgressDetail(layer.Size, layer.Size));
            if (image.RepoTags.Count == 0)
                await stream.StreamAsync($"Loaded image ID: {image.ImageId}\n");
            foreach (var tag in image.RepoTags)
                await stream.StreamAsync($"Loaded image: {Familiar(tag)}\n");
        }
        if (loaded.Count == 0) await stream.StreamAsync("No images found in the archive\n");
    });

    // GET /images/get?names=a&names=b
    private static Task SaveManyAsync(HttpContext context) => Guarded(context, () =>
        SaveAsync(context, context.Request.Query["names"].Where(n => !string.IsNullOrEmpty(n)).Select(n => n!).ToList()));

    private static async Task SaveAsync(HttpContext context, IReadOnlyList<string> names)
    {
        if (names.Count == 0) throw new FormatException("no images given to save");
        var toSave = new Dictionary<string, List<string>>();
        foreach (var name in names)
        {
            var image = await ResolveAsync(context, name);
            if (!toSave.TryGetValue(image.ImageId, out var tags)) toSave[image.ImageId] = tags = [];
            var normalized = Normalize(name);
            // Saved by reference: that tag goes with it; saved by id: none, as Docker does.
            if (normalized is not null && image.RepoTags.Contains(normalized) && !tags.Contains(normalized)) tags.Add(normalized);
        }
        var store = Store(context);
        foreach (var id in toSave.Keys)
            if (!store.Content.Exists(Digest.Parse(id)))
                throw new OperationRejectedException(RejectionCode.Unavailable, $"image {id} is not stored on this node");
        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "application/x-tar";
        await store.SaveAsync(context.Response.Body,
            toSave.Select(kv => new ImageToSave(Digest.Parse(kv.Key), kv.Value)).ToList(), context.RequestAborted);
    }

    private static bool Flag(HttpContext context, string name) =>
        context.Request.Query[name].ToString() is "1" or "true" or "True";
}
