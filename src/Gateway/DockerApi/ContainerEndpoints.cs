using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Flotilla.Cluster;
using Flotilla.Cluster.Audit;
using Flotilla.Cluster.Containers;
using Flotilla.Cluster.Images;
using Flotilla.Contracts;
using Flotilla.Contracts.Containers;
using Flotilla.Gateway.Forwarding;
using Flotilla.Gateway.Http;
using Flotilla.NodeRuntime.Containers;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Oci;
using Flotilla.NodeRuntime.Volumes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Flotilla.Gateway.DockerApi;

/// <summary>Docker's container lifecycle endpoints: create, start, stop, kill, restart, wait, ps, inspect, logs, rm, rename, pause.</summary>
public static class ContainerEndpoints
{
    public static void MapContainerEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapPost("/containers/create", CreateAsync);
        app.MapGet("/containers/json", ListAsync);
        app.MapGet("/containers/{id}/json", InspectAsync);
        app.MapPost("/containers/{id}/start", StartAsync);
        app.MapPost("/containers/{id}/stop", (HttpContext c, string id) => Command(c, id,
            (v, o) => new StopContainer(v, IntQuery(c, "t"), SignalQuery(c), o), StatusCodes.Status204NoContent));
        app.MapPost("/containers/{id}/restart", (HttpContext c, string id) => Command(c, id,
            (v, o) => new RestartContainer(v, IntQuery(c, "t"), o), StatusCodes.Status204NoContent));
        app.MapPost("/containers/{id}/kill", (HttpContext c, string id) => Command(c, id,
            (v, o) => new KillContainer(v, SignalQuery(c) ?? Signal.Kill, o), StatusCodes.Status204NoContent));
        app.MapPost("/containers/{id}/pause", (HttpContext c, string id) => Command(c, id, (v, o) => new PauseContainer(v, o), StatusCodes.Status204NoContent));
        app.MapPost("/containers/{id}/unpause", (HttpContext c, string id) => Command(c, id, (v, o) => new UnpauseContainer(v, o), StatusCodes.Status204NoContent));
        app.MapPost("/containers/{id}/rename", RenameAsync);
        app.MapPost("/containers/{id}/wait", WaitAsync);
        app.MapDelete("/containers/{id}", RemoveAsync);
        app.MapGet("/containers/{id}/logs", LogsAsync);
        app.MapPost("/containers/prune", PruneAsync);
    }

    private static ContainerService Containers(HttpContext c) => c.RequestServices.GetRequiredService<ContainerService>();
    private static RequestOrigin Origin(HttpContext c) => (RequestOrigin)c.Items[DockerApiMiddleware.OriginItem]!;

    private static int? IntQuery(HttpContext c, string name) =>
        int.TryParse(c.Request.Query[name], NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : null;

    private static Signal? SignalQuery(HttpContext c) =>
        c.Request.Query["signal"].ToString() is { Length: > 0 } s
            ? Signal.TryParse(s, out var signal) ? signal : throw ContainerCreateRequest.Invalid($"Invalid signal: {s}")
            : null;

    private static bool Flag(HttpContext c, string name) => c.Request.Query[name].ToString() is "1" or "true" or "True";

    public static Task Guarded(HttpContext context, Func<Task> action) => DockerErrors.Guarded(context, action);

    private static Task Command(HttpContext context, string id, Func<string, RequestOrigin, IContainerCommand> make, int status) =>
        Guarded(context, async () =>
        {
            var container = await Containers(context).ResolveAsync(id, context.RequestAborted);
            await Containers(context).SendAsync(make(container.ContainerId, Origin(context)));
            context.Response.StatusCode = status;
        });

    // POST /containers/{id}/start: a container's first start continues the story of its creation (docker run).
    private static Task StartAsync(HttpContext context, string id) => Guarded(context, async () =>
    {
        var container = await Containers(context).ResolveAsync(id, context.RequestAborted);
        // dockerd's answer (404, errdefs.NotFound from FindNetwork) for a network that does not exist.
        if (!ContainerCreateRequest.IsKnownNetworkMode(container.NetworkMode))
            throw new OperationRejectedException(RejectionCode.NotFound, $"failed to set up container networking: network {container.NetworkMode} not found");
        var origin = Origin(context);
        if (container.Generation == 0)
            origin = await context.RequestServices.GetRequiredService<AuditQuery>()
                .JoinCreationStoryAsync(ContainerStreams.Key(container.ContainerId), origin, context.RequestAborted);
        await Containers(context).SendAsync(new StartContainer(container.ContainerId, origin));
        context.Response.StatusCode = StatusCodes.Status204NoContent;
    });

    // POST /containers/create?name=
    private static Task CreateAsync(HttpContext context) => Guarded(context, async () =>
    {
        JsonObject body;
        try
        {
            body = await JsonSerializer.DeserializeAsync<JsonObject>(context.Request.Body, cancellationToken: context.RequestAborted)
                ?? throw new FormatException("config cannot be empty in order to create a container");
        }
        catch (JsonException ex)
        {
            throw new FormatException($"invalid JSON: {ex.Message}");
        }
        var imageText = body["Image"]?.ToString();
        if (string.IsNullOrWhiteSpace(imageText)) throw ContainerCreateRequest.Invalid("config cannot be empty in order to create a container");

        var images = context.RequestServices.GetRequiredService<ImageService>();
        var normalized = ImageReference.TryParse(imageText, out var reference) && reference is not null && reference.Digest is null
            ? (reference.Tag is null ? reference.WithTag(ImageReference.DefaultTag) : reference).ToString()
            : null;
        var image = await images.FindAsync(normalized, imageText, context.RequestAborted)
            ?? throw new OperationRejectedException(RejectionCode.NotFound,
                $"No such image: {(normalized is null ? imageText : ImageReference.Parse(normalized).FamiliarString)}");

        // A volume has no path here: the node that runs the container resolves it in its own data directory at start.
        var volumeNames = new List<string>();
        var definition = ContainerCreateRequest.Build(body, image, imageText, name =>
        {
            volumeNames.Add(name);
            return new ContainerMount("volume", "", "", false, name);
        });
        var registry = context.RequestServices.GetRequiredService<Cluster.Volumes.VolumeRegistry>();
        var (constraints, home, newVolumes) = await VolumePlacement.ResolveAsync(registry, volumeNames, context.RequestAborted);
        string id;
        PlacementDecision placed;
        try
        {
            (id, placed) = await Containers(context).CreateScheduledAsync(context.Request.Query["name"].ToString(), definition,
                Origin(context), context.RequestAborted, constraints);
        }
        catch (OperationRejectedException e) when (home is not null && e.Code == RejectionCode.Internal)
        {
            throw new OperationRejectedException(e.Code, $"its volumes live on node {home}, which takes no container now: {e.Message}");
        }
        if (await VolumePlacement.RecordAsync(registry, newVolumes, placed.Node, id, Origin(context), context.RequestAborted) is { } lost)
        {
            await Containers(context).SendAsync(new RemoveContainer(id, true, Origin(context)));
            throw new OperationRejectedException(RejectionCode.Conflict, lost);
        }
        if (context.RequestServices.GetRequiredService<NodeForwarder>().IsLocal(placed.Node))
            foreach (var name in newVolumes) context.RequestServices.GetService<VolumeStore>()?.Ensure(name);
        // An rmi that raced this create: it found no container, then removed the image and ran the image GC. Either the
        // GC read this container (its layers are kept) or this read sees the image gone (both sides write, then read the
        // other's write): then the container goes, as if the create had come second.
        if (await images.GetAsync(image.ImageId, CancellationToken.None) is null)
        {
            await Containers(context).SendAsync(new RemoveContainer(id, true, Origin(context)));
            throw new OperationRejectedException(RejectionCode.NotFound, $"No such image: {imageText}");
        }
        await JsonReply.WriteAsync(context, new { Id = id, Warnings = Array.Empty<string>() }, StatusCodes.Status201Created);
    });

    // POST /containers/{id}/rename?name=
    private static Task RenameAsync(HttpContext context, string id) => Guarded(context, async () =>
    {
        var container = await Containers(context).ResolveAsync(id, context.RequestAborted);
        var name = context.Request.Query["name"].ToString().TrimStart('/');
        await Containers(context).RenameAsync(container, name, Origin(context), context.RequestAborted);
        context.Response.StatusCode = StatusCodes.Status204NoContent;
    });

    // POST /containers/{id}/wait?condition=
    private static Task WaitAsync(HttpContext context, string id) => Guarded(context, async () =>
    {
        var container = await Containers(context).ResolveAsync(id, context.RequestAborted);
        var word = context.Request.Query["condition"].ToString() is { Length: > 0 } c ? c : "not-running";
        if (!DockerWords.TryParseWaitCondition(word, out var condition))
            throw ContainerCreateRequest.Invalid($"invalid condition: \"{word}\"");
        // The CLI sends wait before start and blocks until the headers arrive: send them now.
        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = JsonReply.ContentType;
        await context.Response.StartAsync(context.RequestAborted);
        await context.Response.Body.FlushAsync(context.RequestAborted);
        var result = await Containers(context).WaitAsync(container.ContainerId, condition, context.RequestAborted);
        await JsonSerializer.SerializeAsync(context.Response.Body,
            new { result.StatusCode, Error = result.Error is null ? null : new { Message = result.Error } }, JsonReply.Docker, context.RequestAborted);
    });

    // DELETE /containers/{id}?force=&v=
    private static Task RemoveAsync(HttpContext context, string id) => Guarded(context, async () =>
    {
        var container = await Containers(context).ResolveAsync(id, context.RequestAborted);
        await Containers(context).SendAsync(new RemoveContainer(container.ContainerId, Flag(context, "force"), Origin(context)));
        if (Flag(context, "v"))
        {
            // Anonymous volumes (64-hex names) go with the container, on the node that holds them; named ones stay, as in Docker.
            foreach (var m in container.Mounts.Where(m => m.VolumeName is { Length: 64 }))
                await VolumeEndpoints.RemoveWhereItLivesAsync(context, m.VolumeName!);
        }
        context.Response.StatusCode = StatusCodes.Status204NoContent;
    });

    // POST /containers/prune
    private static Task PruneAsync(HttpContext context) => Guarded(context, async () =>
    {
        var deleted = new List<string>();
        foreach (var c in await Containers(context).ListAsync(context.RequestAborted))
        {
            if (c.Status is ContainerStatus.Running or ContainerStatus.Paused or ContainerStatus.Restarting) continue;
            await Containers(context).SendAsync(new RemoveContainer(c.ContainerId, false, Origin(context)));
            deleted.Add(c.ContainerId);
        }
        await JsonReply.WriteAsync(context, new { ContainersDeleted = deleted.Count == 0 ? null : deleted, SpaceReclaimed = 0 });
    });

    // GET /containers/json?all=&limit=&size=&filters=
    private static Task ListAsync(HttpContext context) => Guarded(context, async () =>
    {
        var filters = DockerFilters.Parse(context.Request.Query["filters"]);
        filters.Validate("status", "name", "label", "ancestor", "id", "exited", "before", "since", "network", "volume", "health", "publish", "expose", "isolation", "is-task");
        var all = Flag(context, "all");
        IEnumerable<ContainerView> list = await Containers(context).ListAsync(context.RequestAborted);
        var statuses = filters.Get("status").Select(s => DockerWords.TryParseStatus(s, out var status)
            ? status : throw new FormatException($"invalid filter 'status={s}'")).ToList();
        if (!all && statuses.Count == 0) list = list.Where(c => c.Status is ContainerStatus.Running or ContainerStatus.Paused or ContainerStatus.Restarting);
        if (statuses.Count > 0) list = list.Where(c => statuses.Contains(c.Status));
        foreach (var name in filters.Get("name")) list = list.Where(c => c.Name.Contains(name.TrimStart('/'), StringComparison.Ordinal));
        foreach (var id in filters.Get("id")) list = list.Where(c => c.ContainerId.StartsWith(id, StringComparison.Ordinal));
        foreach (var label in filters.Get("label"))
        {
            var eq = label.IndexOf('=');
            list = eq < 0 ? list.Where(c => c.Labels.ContainsKey(label))
                : list.Where(c => c.Labels.TryGetValue(label[..eq], out var v) && v == label[(eq + 1)..]);
        }
        var ancestors = filters.Get("ancestor");
        if (ancestors.Count > 0)
        {
            var images = context.RequestServices.GetRequiredService<ImageService>();
            var ids = new HashSet<string>();
            foreach (var a in ancestors)
            {
                var n = ImageReference.TryParse(a, out var r) && r is not null && r.Digest is null ? (r.Tag is null ? r.WithTag("latest") : r).ToString() : null;
                if (await images.FindAsync(n, a, context.RequestAborted) is { } img) ids.Add(img.ImageId);
            }
            list = list.Where(c => ids.Contains(c.ImageId));
        }
        var healths = filters.Get("health");
        foreach (var h in healths)
            if (h is not ("none" or "starting" or "healthy" or "unhealthy"))
                throw new FormatException($"invalid filter 'health={h}': invalid value for health ({h}): must be one of none, starting, healthy, unhealthy");
        if (healths.Count > 0) list = list.Where(c => healths.Contains(c.Health.Word()));
        foreach (var exited in filters.Get("exited"))
            list = list.Where(c => c.Status == ContainerStatus.Exited && c.ExitCode.ToString(CultureInfo.InvariantCulture) == exited);
        if (IntQuery(context, "limit") is { } limit && limit > 0) list = list.Take(limit);

        var now = DateTimeOffset.UtcNow;
        var withSize = Flag(context, "size");
        var runtime = context.RequestServices.GetService<NodeContainerRuntime>();
        var forwarder = context.RequestServices.GetRequiredService<NodeForwarder>();
        var imageSizes = withSize
            ? (await context.RequestServices.GetRequiredService<ImageService>().ListAsync(context.RequestAborted)).ToDictionary(i => i.ImageId, i => i.Size)
            : [];
        // Only this node's containers have their writable layer here; others report none (as before placement existed).
        long? SizeRw(ContainerView c) => withSize && forwarder.IsLocal(c.Node) && runtime?.Images.Snapshots.UpperOf(c.ContainerId) is { } upper ? DirectorySize(upper) : withSize ? 0 : null;
        var volumeRoots = (await context.RequestServices.GetRequiredService<Cluster.Queries.ClusterQueries>().NodesAsync(context.RequestAborted))
            .ToDictionary(n => n.Name, n => n.VolumeRoot);
        await JsonReply.WriteAsync(context, list.Select(c => new
        {
            Id = c.ContainerId,
            Names = new[] { "/" + c.Name },
            c.Image,
            ImageID = c.ImageId,
            c.Command,
            Created = c.CreatedAt.ToUnixTimeSeconds(),
            Ports = Array.Empty<object>(),
            Labels = c.Labels,
            State = DockerWords.Of(c.Status),
            Status = StatusText(c, now),
            HostConfig = new { NetworkMode = c.NetworkMode },
            NetworkSettings = new { Networks = new Dictionary<string, object>() },
            Mounts = c.Mounts.Select(m => MountJson(m, volumeRoots.GetValueOrDefault(c.Node))).ToArray(),
            SizeRw = SizeRw(c),
            SizeRootFs = withSize ? SizeRw(c) + imageSizes.GetValueOrDefault(c.ImageId) : null,
            Node = c.Node,
        }).ToList());
    });

    /// <summary>Apparent size of the files under a directory (a container's writable layer).</summary>
    private static long DirectorySize(string path)
    {
        try
        {
            return new DirectoryInfo(path).EnumerateFiles("*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 })
                .Sum(f => f.Length);
        }
        catch (IOException)
        {
            return 0;
        }
    }

    /// <summary>Docker's human status: "Up 5 seconds", "Up 5 seconds (healthy)", "Exited (0) 3 minutes ago", "Created".</summary>
    public static string StatusText(ContainerView c, DateTimeOffset now) => c.Status switch
    {
        ContainerStatus.Running when c.Health is { } health =>
            $"Up {HumanDuration(now - (c.StartedAt ?? now))} ({(health == HealthStatus.Starting ? "health: starting" : ((HealthStatus?)health).Word())})",
        ContainerStatus.Running => $"Up {HumanDuration(now - (c.StartedAt ?? now))}",
        ContainerStatus.Paused => $"Up {HumanDuration(now - (c.StartedAt ?? now))} (Paused)",
        ContainerStatus.Restarting => $"Restarting ({c.ExitCode}) {HumanDuration(now - (c.FinishedAt ?? now))} ago",
        ContainerStatus.Exited => $"Exited ({c.ExitCode}) {HumanDuration(now - (c.FinishedAt ?? now))} ago",
        ContainerStatus.Removing => "Removal In Progress",
        _ => "Created",
    };

    /// <summary>go-units HumanDuration.</summary>
    public static string HumanDuration(TimeSpan d)
    {
        var seconds = (int)d.TotalSeconds;
        if (seconds < 1) return "Less than a second";
        if (seconds == 1) return "1 second";
        if (seconds < 60) return $"{seconds} seconds";
        var minutes = (int)d.TotalMinutes;
        if (minutes == 1) return "About a minute";
        if (minutes < 60) return $"{minutes} minutes";
        var hours = (int)Math.Round(d.TotalHours);
        if (hours == 1) return "About an hour";
        if (hours < 48) return $"{hours} hours";
        if (hours < 24 * 7 * 2) return $"{hours / 24} days";
        if (hours < 24 * 30 * 2) return $"{hours / 24 / 7} weeks";
        if (hours < 24 * 365 * 2) return $"{hours / 24 / 30} months";
        return $"{hours / 24 / 365} years";
    }

    /// <param name="volumeRoot">The volume directory of the container's node: a volume's source is there (<c>NodeJoined.VolumeRoot</c>).</param>
    private static object MountJson(ContainerMount m, string? volumeRoot) => new
    {
        Type = m.Type,
        Name = m.VolumeName,
        Source = m is { Type: "volume", Source.Length: 0, VolumeName: { } volume } && volumeRoot is { Length: > 0 }
            ? VolumeStore.MountpointUnder(volumeRoot, volume)
            : m.Source,
        Destination = m.Destination,
        Driver = m.Type == "volume" ? "local" : null,
        Mode = m.ReadOnly ? "ro" : "",
        RW = !m.ReadOnly,
        Propagation = m.Type == "bind" ? (m.Propagation is { Length: > 0 } p ? p : "rprivate") : "",
    };

    // GET /containers/{id}/json
    private static Task InspectAsync(HttpContext context, string id) => Guarded(context, async () =>
    {
        var view = await Containers(context).ResolveAsync(id, context.RequestAborted);
        var s = await Containers(context).GetAsync(view.ContainerId);
        var d = s.Definition!;
        // Paths on the container's node: known only when that is this process.
        var runtime = context.RequestServices.GetRequiredService<NodeForwarder>().IsLocal(s.Node)
            ? context.RequestServices.GetService<NodeContainerRuntime>()
            : null;
        var paths = runtime?.Monitor.PathsFor(s.ContainerId);
        var upper = runtime?.Images.Snapshots.UpperOf(s.ContainerId);
        var config = JsonNode.Parse(d.ConfigJson) as JsonObject ?? [];
        if (config["Hostname"]?.ToString() is null or "") config["Hostname"] = d.Hostname.Length > 0 ? d.Hostname : s.ContainerId[..12];
        // Through the typed record: a HostConfig an older version stored verbatim shows only what Flotilla implements.
        var hostConfig = JsonSerializer.SerializeToNode(StoredHostConfig.Parse(d.HostConfigJson))!.AsObject();
        if (hostConfig["NetworkMode"]?.ToString() is null or "") hostConfig["NetworkMode"] = d.NetworkMode;
        hostConfig["RestartPolicy"] = new JsonObject { ["Name"] = DockerWords.Of(d.RestartPolicy.Name), ["MaximumRetryCount"] = d.RestartPolicy.MaximumRetryCount };
        hostConfig["AutoRemove"] = d.AutoRemove;
        hostConfig["Privileged"] = d.Privileged;
        hostConfig["ReadonlyRootfs"] = d.ReadonlyRootfs;
        hostConfig["Memory"] = d.Memory;
        hostConfig["NanoCpus"] = d.NanoCpus;
        hostConfig["CpuShares"] = d.CpuShares;
        hostConfig["PidsLimit"] = d.PidsLimit;
        // What applies: Docker's 64 MiB when the container set none.
        hostConfig["ShmSize"] = d.ShmSize > 0 ? d.ShmSize : Flotilla.NodeRuntime.Oci.OciBundleBuilder.DefaultShmSize;
        hostConfig["LogConfig"] = new JsonObject
        {
            ["Type"] = "json-file",
            ["Config"] = d.LogSizeMax > 0 ? new JsonObject { ["max-size"] = d.LogSizeMax.ToString(CultureInfo.InvariantCulture) } : new JsonObject(),
        };

        // dockerd omits State.Health without a healthcheck.
        var state = JsonSerializer.SerializeToNode(new
        {
            Status = DockerWords.Of(s.Status),
            Running = s.Status is ContainerStatus.Running or ContainerStatus.Paused,
            Paused = s.Status == ContainerStatus.Paused,
            Restarting = s.Status == ContainerStatus.Restarting,
            OOMKilled = s.OomKilled,
            Dead = s.Status == ContainerStatus.Dead,
            s.Pid,
            s.ExitCode,
            s.Error,
            StartedAt = s.StartedAt is { } st ? Rfc3339(st) : "0001-01-01T00:00:00Z",
            FinishedAt = s.FinishedAt is { } ft ? Rfc3339(ft) : "0001-01-01T00:00:00Z",
            Health = s.Health is { } h ? new
            {
                Status = ((HealthStatus?)h.Status).Word(),
                h.FailingStreak,
                Log = h.Log.Select(r => new { Start = Rfc3339(r.Start), End = Rfc3339(r.End), r.ExitCode, r.Output }).ToArray(),
            } : null,
        }, JsonReply.Docker)!.AsObject();
        if (s.Health is null) state.Remove("Health");

        var node = (await context.RequestServices.GetRequiredService<Cluster.Queries.ClusterQueries>().NodesAsync(context.RequestAborted))
            .FirstOrDefault(n => n.Name == s.Node);
        await JsonReply.WriteAsync(context, new
        {
            Id = s.ContainerId,
            Created = Rfc3339(s.CreatedAt),
            Path = d.Args.Count > 0 ? d.Args[0] : "",
            Args = d.Args.Skip(1).ToArray(),
            State = state,
            Image = d.ImageId,
            ResolvConfPath = paths is null ? "" : Path.Combine(paths.Bundle, "resolv.conf"),
            HostnamePath = paths is null ? "" : Path.Combine(paths.Bundle, "hostname"),
            HostsPath = paths is null ? "" : Path.Combine(paths.Bundle, "hosts"),
            LogPath = paths?.Log ?? "",
            Name = "/" + s.Name,
            s.RestartCount,
            Driver = "overlay2",
            Platform = "linux",
            MountLabel = "",
            ProcessLabel = "",
            AppArmorProfile = "",
            ExecIDs = s.ExecIds.Count == 0 ? null : s.ExecIds,
            HostConfig = hostConfig,
            GraphDriver = new
            {
                Name = "overlay2",
                Data = upper is null ? null : new Dictionary<string, string>
                {
                    ["MergedDir"] = runtime!.RootfsOf(s.ContainerId),
                    ["UpperDir"] = upper,
                    ["WorkDir"] = Path.Combine(Path.GetDirectoryName(upper)!, "work"),
                },
            },
            Mounts = d.Mounts.Select(m => MountJson(m, node?.VolumeRoot)).ToArray(),
            Config = config,
            NetworkSettings = new
            {
                Bridge = "",
                SandboxID = "",
                SandboxKey = s.Pid > 0 ? $"/proc/{s.Pid}/ns/net" : "",
                Ports = new Dictionary<string, object>(),
                IPAddress = "",
                Networks = new Dictionary<string, object>(),
            },
            // Swarm classic's section (ID, IP, Addr, Name, Cpus, Memory, Labels) plus which run it is.
            Node = NodeSection(s, node),
        });
    });

    private static object NodeSection(ContainerSnapshot s, Cluster.Nodes.NodeView? node)
    {
        // host:port, without the https:// a node API with cluster TLS registers.
        var api = Cluster.Security.ClusterEndpoint.Parse(node?.ApiEndpoint ?? "").HostPort;
        var ip = api.LastIndexOf(':') is var colon and > 0 ? api[..colon] : "";
        return new
        {
            ID = s.Node,
            IP = ip,
            Addr = api,
            Name = s.Node,
            Cpus = node?.Cpus ?? 0,
            Memory = node?.MemoryBytes ?? 0,
            Labels = node?.Labels ?? [],
            Status = node?.Status ?? "unknown",
            s.Generation,
            s.Desired,
        };
    }

    private static string Rfc3339(DateTimeOffset t) => t.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.fffffff'Z'", CultureInfo.InvariantCulture);

    // GET /containers/{id}/logs?stdout=&stderr=&follow=&timestamps=&since=&until=&tail=
    private static Task LogsAsync(HttpContext context, string id) => Guarded(context, async () =>
    {
        var view = await Containers(context).ResolveAsync(id, context.RequestAborted);
        // The log files are on the container's node.
        if (await context.RequestServices.GetRequiredService<NodeForwarder>().TryForwardAsync(context, view.Node)) return;
        var stdout = Flag(context, "stdout");
        var stderr = Flag(context, "stderr");
        if (!stdout && !stderr) throw ContainerCreateRequest.Invalid("Bad parameters: you must choose at least one stream");
        var runtime = context.RequestServices.GetService<NodeContainerRuntime>()
            ?? throw new OperationRejectedException(RejectionCode.Unavailable, "no container runtime on this gateway's node");
        var snapshot = await Containers(context).GetAsync(view.ContainerId);
        var tty = snapshot.Definition!.Tty;
        var follow = Flag(context, "follow");
        var timestamps = Flag(context, "timestamps");
        var tailText = context.Request.Query["tail"].ToString();
        int? tail = tailText is "" or "all" ? null : int.TryParse(tailText, out var t) && t >= 0 ? t : null;
        var since = UnixTime(context.Request.Query["since"]);
        var until = UnixTime(context.Request.Query["until"]);

        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = tty ? "application/vnd.docker.raw-stream" : "application/vnd.docker.multiplexed-stream";
        await context.Response.StartAsync(context.RequestAborted);
        await context.Response.Body.FlushAsync(context.RequestAborted);

        // Follow ends when the container is no longer running.
        var stopped = follow && snapshot.Status is ContainerStatus.Running or ContainerStatus.Paused or ContainerStatus.Restarting
            ? Containers(context).WaitAsync(view.ContainerId, WaitCondition.NotRunning, context.RequestAborted)
            : Task.CompletedTask;
        var files = runtime.LogFiles(view.ContainerId);
        var options = new LogReadOptions { Stdout = stdout, Stderr = stderr, Since = since, Until = until };
        var current = files.Count > 0 ? files[^1] : runtime.Monitor.PathsFor(view.ContainerId).Log;
        var earlier = files.Take(Math.Max(0, files.Count - 1)).ToList();
        var body = context.Response.Body;
        // Earlier runs first (complete), then the current run (followed when asked). Nothing is held whole: without
        // --tail entries are streamed as read; with --tail N only the last N entries of each file are read, from the end.
        if (tail is not { } n)
        {
            foreach (var file in earlier)
                await foreach (var e in ContainerLogReader.ReadAsync(file, options, null, context.RequestAborted))
                    await DockerLogFrame.WriteEntryAsync(body, e, timestamps, tty, context.RequestAborted);
        }
        else
        {
            // How many the current file has decides how many come from earlier runs (newest first).
            var fromCurrent = await CountAsync(ContainerLogReader.ReadAsync(current, options with { Tail = n }, null, context.RequestAborted));
            var wanted = n - fromCurrent;
            var parts = new List<List<LogEntry>>();
            for (var f = earlier.Count - 1; f >= 0 && wanted > 0; f--)
            {
                var part = new List<LogEntry>();
                await foreach (var e in ContainerLogReader.ReadAsync(earlier[f], options with { Tail = wanted }, null, context.RequestAborted)) part.Add(e);
                parts.Insert(0, part);
                wanted -= part.Count;
            }
            foreach (var e in parts.SelectMany(p => p))
                await DockerLogFrame.WriteEntryAsync(body, e, timestamps, tty, context.RequestAborted);
        }
        await foreach (var e in ContainerLogReader.ReadAsync(current, options with { Follow = follow, Tail = tail }, follow ? stopped : null, context.RequestAborted))
        {
            await DockerLogFrame.WriteEntryAsync(body, e, timestamps, tty, context.RequestAborted);
            if (follow) await body.FlushAsync(context.RequestAborted);
        }
    });

    private static async Task<int> CountAsync(IAsyncEnumerable<LogEntry> entries)
    {
        var count = 0;
        await foreach (var _ in entries) count++;
        return count;
    }

    /// <summary>Docker's log time bounds: unix seconds with optional fraction; 0 or empty = none.</summary>
    private static DateTimeOffset? UnixTime(string? text)
    {
        if (string.IsNullOrEmpty(text) || text == "0") return null;
        if (!decimal.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds))
            throw new FormatException($"invalid value for time: {text}");
        return DateTimeOffset.UnixEpoch.AddTicks((long)(seconds * TimeSpan.TicksPerSecond));
    }
}
