using System.Diagnostics;
using System.Formats.Tar;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Flotilla.Cluster;
using Flotilla.Cluster.Containers;
using Flotilla.Cluster.Images;
using Flotilla.Contracts;
using Flotilla.Contracts.Containers;
using Flotilla.Contracts.Images;
using Flotilla.Gateway.Forwarding;
using Flotilla.Gateway.Http;
using Flotilla.NodeRuntime.Containers;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Oci;
using Flotilla.NodeRuntime.Storage;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Flotilla.Gateway.DockerApi;

/// <summary>
/// Docker's container endpoints that stream or reach into a running container: exec (create, inspect, resize;
/// start is a hijack, see <c>ExecStartHijackHandler</c>), resize, top, stats, export, commit and the archive
/// (docker cp) endpoints. All-in-one: the node runtime is in this process; without one they answer 503.
/// </summary>
public static class ContainerStreamEndpoints
{
    public static void MapContainerStreamEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapPost("/containers/{name}/exec", ExecCreateAsync);
        app.MapGet("/exec/{id}/json", ExecInspectAsync);
        app.MapPost("/exec/{id}/resize", ExecResizeAsync);
        app.MapPost("/exec/{id}/start", ExecStartAsync);
        app.MapPost("/containers/{name}/resize", ResizeAsync);
        app.MapGet("/containers/{name}/top", TopAsync);
        app.MapGet("/containers/{name}/stats", StatsAsync);
        app.MapGet("/containers/{name}/export", ExportAsync);
        app.MapGet("/containers/{name}/changes", ChangesAsync);
        app.MapPost("/commit", CommitAsync);
        app.MapMethods("/containers/{name}/archive", [HttpMethods.Head, HttpMethods.Get], ArchiveGetAsync);
        app.MapPut("/containers/{name}/archive", ArchivePutAsync);
    }

    private static Task Guarded(HttpContext context, Func<Task> action) => DockerErrors.Guarded(context, action);

    private static ContainerService Containers(HttpContext c) => c.RequestServices.GetRequiredService<ContainerService>();
    private static ExecRegistry Execs(HttpContext c) => c.RequestServices.GetRequiredService<ExecRegistry>();
    private static RequestOrigin Origin(HttpContext c) => (RequestOrigin)c.Items[DockerApiMiddleware.OriginItem]!;
    private static bool Flag(HttpContext context, string name, bool fallback = false) =>
        context.Request.Query[name].ToString() is { Length: > 0 } v ? v is "1" or "true" or "True" : fallback;

    private static NodeContainerRuntime Runtime(HttpContext c) =>
        c.RequestServices.GetService<NodeContainerRuntime>()
        ?? throw new OperationRejectedException(RejectionCode.Unavailable, "this process has no container runtime");

    private static NodeForwarder Forwarder(HttpContext c) => c.RequestServices.GetRequiredService<NodeForwarder>();

    /// <summary>The container's state, or null when its node is another process and the request was forwarded there.</summary>
    private static async Task<ContainerSnapshot?> SnapshotAsync(HttpContext context, string name)
    {
        var view = await Containers(context).ResolveAsync(name, context.RequestAborted);
        if (await Forwarder(context).TryForwardAsync(context, view.Node)) return null;
        return await Containers(context).GetAsync(view.ContainerId);
    }

    /// <summary>As <see cref="SnapshotAsync"/>, for a container that must be running (here).</summary>
    private static async Task<ContainerSnapshot?> RunningAsync(HttpContext context, string name)
    {
        if (await SnapshotAsync(context, name) is not { } snapshot) return null;
        if (snapshot.Status is not (ContainerStatus.Running or ContainerStatus.Paused))
            throw new OperationRejectedException(RejectionCode.Conflict, $"Container {snapshot.ContainerId} is not running");
        return snapshot;
    }

    // ---------------------------------------------------------------- exec

    /// <summary>
    /// Docker's exec config fields, case-sensitive as the deserializer (JsonReply.Docker). <c>Container</c> is the old
    /// ExecConfig's copy of the container id that docker-py still sends; the path names the container, as in dockerd.
    /// </summary>
    private static readonly HashSet<string> ExecFields = new(
        ["Cmd", "User", "WorkingDir", "Env", "Tty", "Privileged", "AttachStdin", "AttachStdout", "AttachStderr", "DetachKeys", "ConsoleSize", "Detach",
            "Container"],
        StringComparer.Ordinal);

    private sealed record ExecCreateBody(
        List<string>? Cmd, string? User, string? WorkingDir, List<string>? Env, bool Tty, bool Privileged,
        bool AttachStdin, bool AttachStdout, bool AttachStderr, string? DetachKeys, int[]? ConsoleSize);

    // POST /containers/{name}/exec
    private static Task ExecCreateAsync(HttpContext context, string name) => Guarded(context, async () =>
    {
        // An exec instance lives on the container's node (it runs there and its state is kept there).
        var view = await Containers(context).ResolveAsync(name, context.RequestAborted);
        if (!Forwarder(context).IsLocal(view.Node))
        {
            await Forwarder(context).ForwardExecCreateAsync(context, view.Node, view.ContainerId);
            return;
        }
        var json = await JsonNode.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted) as JsonObject
                   ?? throw new FormatException("no exec configuration");
        // Every field of Docker's exec config is read below ("Detach" is the client's own business); anything else
        // with a value is refused by name rather than ignored, as at create.
        foreach (var (field, value) in json)
            if (!ExecFields.Contains(field) && !CreateOptionTable.IsZero(value, []))
                throw ContainerCreateRequest.Invalid($"{field} is not an exec option Flotilla knows: refused rather than ignored");
        var body = json.Deserialize<ExecCreateBody>(JsonReply.Docker) ?? throw new FormatException("no exec configuration");
        if (body.Cmd is not { Count: > 0 }) throw new FormatException("No exec command specified");
        var snapshot = await Containers(context).GetAsync(view.ContainerId);
        if (snapshot.Status == ContainerStatus.Paused)
            throw new OperationRejectedException(RejectionCode.Conflict, $"Container {snapshot.ContainerId} is paused, unpause the container before exec");
        if (snapshot.Status != ContainerStatus.Running)
            throw new OperationRejectedException(RejectionCode.Conflict, $"Container {snapshot.ContainerId} is not running");
        ConsoleSize? size = body.ConsoleSize is [var h, var w] && h > 0 && w > 0 ? new ConsoleSize((ushort)h, (ushort)w) : null;
        var exec = Execs(context).Create(snapshot.ContainerId, new ExecConfig(body.Cmd, body.User ?? "", body.WorkingDir ?? "",
            body.Env ?? [], body.Tty, body.Privileged, body.AttachStdin, body.AttachStdout, body.AttachStderr, body.DetachKeys ?? "", size));
        await JsonReply.WriteAsync(context, new { exec.Id }, StatusCodes.Status201Created);
    });

    // GET /exec/{id}/json
    private static Task ExecInspectAsync(HttpContext context, string id) => Guarded(context, async () =>
    {
        if (await ForwardedRemoteExecAsync(context, id)) return;
        var exec = Execs(context).Find(id) ?? throw DockerErrors.NotFound($"No such exec instance: {id}");
        var c = exec.Config;
        await JsonReply.WriteAsync(context, new
        {
            CanRemove = false,
            ContainerID = exec.ContainerId,
            DetachKeys = c.DetachKeys,
            ExitCode = exec.ExitCode,
            ID = exec.Id,
            OpenStderr = c.AttachStderr,
            OpenStdin = c.AttachStdin,
            OpenStdout = c.AttachStdout,
            ProcessConfig = new
            {
                arguments = c.Cmd.Skip(1).ToArray(),
                entrypoint = c.Cmd[0],
                privileged = c.Privileged,
                tty = c.Tty,
                user = c.User,
            },
            exec.Running,
            exec.Pid,
        });
    });

    /// <summary>An exec this gateway created on another node: the request goes there. False for local and unknown ids.</summary>
    private static async Task<bool> ForwardedRemoteExecAsync(HttpContext context, string id)
    {
        if (Execs(context).Find(id) is not null) return false;
        // A forwarded request is answered here or not at all (one hop): no search of the other nodes.
        var remote = context.Request.Headers.ContainsKey(NodeForwarder.ForwardedHeader)
            ? null
            : await Forwarder(context).LocateRemoteExecAsync(id, context.RequestAborted);
        if (remote is null) return false;
        await Forwarder(context).ForwardAsync(context, remote.Node);
        return true;
    }

    private static ConsoleSize SizeFromQuery(HttpContext context)
    {
        if (!ushort.TryParse(context.Request.Query["h"], out var h) || !ushort.TryParse(context.Request.Query["w"], out var w))
            throw new FormatException("invalid height or width: h and w must be numbers");
        return new ConsoleSize(h, w);
    }

    // POST /exec/{id}/start that reached Kestrel (a reused connection): only Detach can be served without a hijack.
    private static Task ExecStartAsync(HttpContext context, string id) => Guarded(context, async () =>
    {
        if (await ForwardedRemoteExecAsync(context, id)) return;
        var detach = false;
        if (context.Request.ContentLength is > 0 || context.Request.Headers.TransferEncoding.Count > 0)
        {
            using var body = await JsonDocument.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted);
            detach = body.RootElement.ValueKind == JsonValueKind.Object && body.RootElement.TryGetProperty("Detach", out var d) && d.ValueKind == JsonValueKind.True;
        }
        if (!detach)
            throw new OperationRejectedException(RejectionCode.InvalidArgument, "an attached exec start must be the first request of its connection and ask to upgrade (Connection: Upgrade, Upgrade: tcp)");
        var handler = context.RequestServices.GetServices<Flotilla.Gateway.Hijack.IHijackHandler>().OfType<Flotilla.Gateway.Hijack.ExecStartHijackHandler>().Single();
        await handler.StartDetachedAsync(id, Origin(context));
        context.Response.StatusCode = StatusCodes.Status200OK;
    });

    // POST /exec/{id}/resize?h=&w=
    private static Task ExecResizeAsync(HttpContext context, string id) => Guarded(context, async () =>
    {
        if (await ForwardedRemoteExecAsync(context, id)) return;
        var exec = Execs(context).Find(id) ?? throw DockerErrors.NotFound($"No such exec instance: {id}");
        var size = SizeFromQuery(context);
        exec.PendingSize = size;
        if (exec.Session is { } session)
        {
            try { await session.ResizeAsync(size.Rows, size.Columns, context.RequestAborted); } catch (IOException) { }
        }
        context.Response.StatusCode = StatusCodes.Status200OK;
    });

    // POST /containers/{name}/resize?h=&w=
    private static Task ResizeAsync(HttpContext context, string name) => Guarded(context, async () =>
    {
        var size = SizeFromQuery(context);
        if (await RunningAsync(context, name) is not { } snapshot) return;
        var runtime = Runtime(context);
        try
        {
            await runtime.Monitor.ResizeAsync(snapshot.ContainerId, size.Rows, size.Columns, context.RequestAborted);
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException)
        {
            throw new OperationRejectedException(RejectionCode.Conflict, $"cannot resize container {snapshot.ContainerId}: {ex.Message}");
        }
        context.Response.StatusCode = StatusCodes.Status200OK;
    });

    // ---------------------------------------------------------------- top

    // GET /containers/{name}/top?ps_args=
    private static Task TopAsync(HttpContext context, string name) => Guarded(context, async () =>
    {
        if (await RunningAsync(context, name) is not { } snapshot) return;
        var runtime = Runtime(context);
        var pids = (await runtime.Monitor.Runtime.PsAsync(snapshot.ContainerId, context.RequestAborted)).ToHashSet();
        var psArgs = context.Request.Query["ps_args"].ToString();
        if (psArgs.Length == 0) psArgs = "-ef";
        var psi = new ProcessStartInfo("ps") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in psArgs.Split(' ', StringSplitOptions.RemoveEmptyEntries)) psi.ArgumentList.Add(a);
        using var ps = Process.Start(psi) ?? throw new InvalidOperationException("could not run ps");
        var output = await ps.StandardOutput.ReadToEndAsync(context.RequestAborted);
        var error = await ps.StandardError.ReadToEndAsync(context.RequestAborted);
        await ps.WaitForExitAsync(context.RequestAborted);
        if (ps.ExitCode != 0)
            throw new OperationRejectedException(RejectionCode.Internal, $"ps: {error.Trim()}");
        await JsonReply.WriteAsync(context, ParsePs(output, pids));
    });

    /// <summary>moby's parsePSOutput: the header names the columns; rows whose PID column is a container pid are kept.</summary>
    public static object ParsePs(string output, IReadOnlySet<int> pids)
    {
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        if (lines.Length == 0) throw new OperationRejectedException(RejectionCode.Internal, "ps printed nothing");
        var titles = lines[0].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var pidIndex = Array.IndexOf(titles, "PID");
        if (pidIndex < 0) throw new OperationRejectedException(RejectionCode.Internal, "Couldn't find PID field in ps output");
        var processes = new List<string[]>();
        foreach (var line in lines.Skip(1))
        {
            var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length <= pidIndex || !int.TryParse(fields[pidIndex], out var pid) || !pids.Contains(pid)) continue;
            // The last column (the command) keeps its spaces.
            var row = fields.Take(titles.Length - 1).ToList();
            row.Add(string.Join(' ', fields.Skip(titles.Length - 1)));
            processes.Add(row.ToArray());
        }
        return new { Titles = titles, Processes = processes };
    }

    // ---------------------------------------------------------------- stats

    // GET /containers/{name}/stats?stream=&one-shot=
    private static Task StatsAsync(HttpContext context, string name) => Guarded(context, async () =>
    {
        if (await SnapshotAsync(context, name) is not { } snapshot) return;
        var stream = Flag(context, "stream", fallback: true);
        var oneShot = Flag(context, "one-shot");
        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = JsonReply.ContentType;
        var previous = CgroupStats.Empty;
        var previousAt = DateTimeOffset.MinValue;
        if (!stream && !oneShot && snapshot.Status == ContainerStatus.Running)
        {
            // As moby: a single answer still carries a sample a moment earlier, so the CLI can compute CPU %.
            previous = CgroupStats.Read(snapshot);
            previousAt = DateTimeOffset.UtcNow;
            await Task.Delay(TimeSpan.FromSeconds(1), context.RequestAborted);
        }
        await context.Response.StartAsync(context.RequestAborted);
        while (!context.RequestAborted.IsCancellationRequested)
        {
            if (stream) snapshot = await Containers(context).GetAsync(snapshot.ContainerId);
            var now = DateTimeOffset.UtcNow;
            var current = snapshot.Status is ContainerStatus.Running or ContainerStatus.Paused ? CgroupStats.Read(snapshot) : CgroupStats.Empty;
            var json = JsonSerializer.SerializeToUtf8Bytes(current.ToDocker(snapshot, now, previous, previousAt), JsonReply.Docker);
            await context.Response.Body.WriteAsync(json, context.RequestAborted);
            await context.Response.Body.WriteAsync("\n"u8.ToArray(), context.RequestAborted);
            await context.Response.Body.FlushAsync(context.RequestAborted);
            if (!stream) return;
            previous = current;
            previousAt = now;
            try
            {
                await Task.Delay(TimeSpan.FromSeconds(1), context.RequestAborted);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    });

    /// <summary>One sample of a container's cgroup v1 counters (and the host's cpu time).</summary>
    private sealed record CgroupStats(
        long CpuTotal, long CpuUser, long CpuKernel, long[] PerCpu, long SystemCpu, int OnlineCpus,
        long MemoryUsage, long MemoryMax, long MemoryLimit, Dictionary<string, long> MemoryStat, long Pids, long PidsLimit,
        long ThrottlePeriods, long ThrottledPeriods, long ThrottledTime)
    {
        public static readonly CgroupStats Empty = new(0, 0, 0, [], 0, 0, 0, 0, 0, [], 0, 0, 0, 0, 0);

        private static long ClockTicks => 100;

        public static CgroupStats Read(ContainerSnapshot snapshot)
        {
            var paths = CgroupPaths(snapshot);
            string Dir(string controller) => paths.TryGetValue(controller, out var p) ? "/sys/fs/cgroup/" + controller + p : "";
            var cpuacct = paths.ContainsKey("cpuacct") ? Dir("cpuacct") : paths.ContainsKey("cpu,cpuacct") ? Dir("cpu,cpuacct") : "/sys/fs/cgroup/cpuacct/flotilla/" + snapshot.ContainerId;
            var cpu = paths.ContainsKey("cpu") ? Dir("cpu") : paths.ContainsKey("cpu,cpuacct") ? Dir("cpu,cpuacct") : "/sys/fs/cgroup/cpu/flotilla/" + snapshot.ContainerId;
            var memory = paths.ContainsKey("memory") ? Dir("memory") : "/sys/fs/cgroup/memory/flotilla/" + snapshot.ContainerId;
            var pids = paths.ContainsKey("pids") ? Dir("pids") : "/sys/fs/cgroup/pids/flotilla/" + snapshot.ContainerId;

            var acctStat = KeyValues(Path.Combine(cpuacct, "cpuacct.stat"));
            var throttling = KeyValues(Path.Combine(cpu, "cpu.stat"));
            var perCpu = (ReadText(Path.Combine(cpuacct, "cpuacct.usage_percpu")) ?? "")
                .Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(v => long.TryParse(v, out var n) ? n : 0).ToArray();
            var limit = Number(Path.Combine(memory, "memory.limit_in_bytes"));
            var hostMemory = HostMemory();
            var pidsMax = ReadText(Path.Combine(pids, "pids.max"))?.Trim();
            return new CgroupStats(
                Number(Path.Combine(cpuacct, "cpuacct.usage")),
                acctStat.GetValueOrDefault("user") * 1_000_000_000 / ClockTicks,
                acctStat.GetValueOrDefault("system") * 1_000_000_000 / ClockTicks,
                perCpu,
                SystemCpuNanos(),
                Environment.ProcessorCount,
                Number(Path.Combine(memory, "memory.usage_in_bytes")),
                Number(Path.Combine(memory, "memory.max_usage_in_bytes")),
                limit <= 0 || (hostMemory > 0 && limit > hostMemory) ? hostMemory : limit,
                KeyValues(Path.Combine(memory, "memory.stat")),
                Number(Path.Combine(pids, "pids.current")),
                long.TryParse(pidsMax, out var pm) ? pm : 0,
                throttling.GetValueOrDefault("nr_periods"), throttling.GetValueOrDefault("nr_throttled"), throttling.GetValueOrDefault("throttled_time"));
        }

        /// <summary>controller → cgroup path of the container's init process (from <c>/proc/&lt;pid&gt;/cgroup</c>).</summary>
        private static Dictionary<string, string> CgroupPaths(ContainerSnapshot snapshot)
        {
            var result = new Dictionary<string, string>();
            if (snapshot.Pid <= 0) return result;
            try
            {
                foreach (var line in File.ReadLines($"/proc/{snapshot.Pid}/cgroup"))
                {
                    var parts = line.Split(':', 3);
                    if (parts.Length != 3 || parts[1].Length == 0) continue;
                    result[parts[1]] = parts[2];
                    foreach (var controller in parts[1].Split(',')) result.TryAdd(controller, parts[2]);
                }
            }
            catch (IOException)
            {
            }
            return result;
        }

        private static string? ReadText(string path)
        {
            try { return File.ReadAllText(path); } catch (IOException) { return null; } catch (UnauthorizedAccessException) { return null; }
        }

        private static long Number(string path) => long.TryParse(ReadText(path)?.Trim(), out var n) ? n : 0;

        private static Dictionary<string, long> KeyValues(string path)
        {
            var result = new Dictionary<string, long>();
            foreach (var line in (ReadText(path) ?? "").Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                var parts = line.Split(' ', 2);
                if (parts.Length == 2 && long.TryParse(parts[1], out var v)) result[parts[0]] = v;
            }
            return result;
        }

        /// <summary>The host's cpu time in nanoseconds, as moby reads it from the first line of /proc/stat.</summary>
        private static long SystemCpuNanos()
        {
            var first = ReadText("/proc/stat")?.Split('\n')[0] ?? "";
            if (!first.StartsWith("cpu ", StringComparison.Ordinal)) return 0;
            var ticks = first.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Take(7).Sum(v => long.TryParse(v, out var n) ? n : 0);
            return ticks * (1_000_000_000 / ClockTicks);
        }

        private static long HostMemory()
        {
            foreach (var line in (ReadText("/proc/meminfo") ?? "").Split('\n'))
                if (line.StartsWith("MemTotal:", StringComparison.Ordinal) &&
                    long.TryParse(line["MemTotal:".Length..].Replace("kB", "").Trim(), out var kb))
                    return kb * 1024;
            return 0;
        }

        private object Cpu() => new
        {
            cpu_usage = new { total_usage = CpuTotal, percpu_usage = PerCpu.Length == 0 ? null : PerCpu, usage_in_kernelmode = CpuKernel, usage_in_usermode = CpuUser },
            system_cpu_usage = SystemCpu,
            online_cpus = OnlineCpus,
            throttling_data = new { periods = ThrottlePeriods, throttled_periods = ThrottledPeriods, throttled_time = ThrottledTime },
        };

        public object ToDocker(ContainerSnapshot snapshot, DateTimeOffset at, CgroupStats previous, DateTimeOffset previousAt) => new
        {
            name = "/" + snapshot.Name,
            id = snapshot.ContainerId,
            read = at.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.fffffffZ", CultureInfo.InvariantCulture),
            preread = previousAt == DateTimeOffset.MinValue ? "0001-01-01T00:00:00Z" : previousAt.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.fffffffZ", CultureInfo.InvariantCulture),
            pids_stats = new { current = Pids, limit = PidsLimit },
            blkio_stats = new { io_service_bytes_recursive = (object?)null, io_serviced_recursive = (object?)null },
            num_procs = 0,
            storage_stats = new { },
            cpu_stats = Cpu(),
            precpu_stats = previous.Cpu(),
            memory_stats = MemoryUsage == 0 && MemoryLimit == 0
                ? (object)new { }
                : new { usage = MemoryUsage, max_usage = MemoryMax, stats = MemoryStat, limit = MemoryLimit },
        };
    }

    // ---------------------------------------------------------------- export

    // GET /containers/{name}/export
    private static Task ExportAsync(HttpContext context, string name) => Guarded(context, async () =>
    {
        if (await SnapshotAsync(context, name) is not { } snapshot) return;
        var runtime = Runtime(context);
        await using var rootfs = await RootfsAccess.OpenAsync(runtime, snapshot, context.RequestAborted);
        await Containers(context).SendAsync(new RecordContainerExport(snapshot.ContainerId, Origin(context)));
        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "application/x-tar";
        using var root = RootHandle.Open(rootfs.Path);
        await using var tar = new TarWriter(context.Response.Body, TarEntryFormat.Pax, leaveOpen: true);
        await TreeArchiver.WriteContentsAsync(tar, root, context.RequestAborted);
    });

    // GET /containers/{name}/changes (docker diff)
    private static Task ChangesAsync(HttpContext context, string name) => Guarded(context, async () =>
    {
        if (await SnapshotAsync(context, name) is not { } snapshot) return;
        var runtime = Runtime(context);
        var upper = runtime.Images.Snapshots.UpperOf(snapshot.ContainerId);
        IReadOnlyList<LayerChange> changes = [];
        if (upper is not null)
        {
            var layers = snapshot.Definition!.ImageLayers.Select(Digest.Parse).ToList();
            foreach (var layer in layers)
                if (!runtime.Images.Content.Exists(layer))
                    throw new OperationRejectedException(RejectionCode.Unavailable, $"image {snapshot.Definition.ImageId} is not stored on this node");
            var chain = await runtime.Images.UnpackAsync(layers.Select(l => new Descriptor(MediaTypes.OciLayer, l, 0)).ToList(), context.RequestAborted);
            var lowers = runtime.Images.Snapshots.View(chain).Lower;
            changes = LayerChanges.WithoutInitLayer(await Task.Run(() => LayerChanges.List(upper, lowers, context.RequestAborted), context.RequestAborted));
        }
        // Docker answers null, not [], for a container without changes.
        await JsonReply.WriteAsync(context, changes.Count == 0 ? null : changes.Select(c => new { c.Path, Kind = (int)c.Kind }).ToList());
    });

    /// <summary>
    /// The container's merged root filesystem: its live overlay mount, or (a container that does not run) a
    /// read-only overlay of its upper dir over the image's layers, mounted for the time of the request.
    /// </summary>
    private sealed class RootfsAccess : IAsyncDisposable
    {
        private readonly string? _temporary;

        private RootfsAccess(string path, string? temporary)
        {
            Path = path;
            _temporary = temporary;
        }

        public string Path { get; }
        public bool IsLive => _temporary is null;

        public static async Task<RootfsAccess> OpenAsync(NodeContainerRuntime runtime, ContainerSnapshot snapshot, CancellationToken cancellationToken)
        {
            var live = runtime.RootfsOf(snapshot.ContainerId);
            if (NodeContainerRuntime.IsMountPoint(live)) return new RootfsAccess(live, null);
            var definition = snapshot.Definition!;
            var layers = definition.ImageLayers.Select(Digest.Parse).ToList();
            foreach (var layer in layers)
                if (!runtime.Images.Content.Exists(layer))
                    throw new OperationRejectedException(RejectionCode.Unavailable, $"image {definition.ImageId} is not stored on this node");
            var chain = await runtime.Images.UnpackAsync(layers.Select(l => new Descriptor(MediaTypes.OciLayer, l, 0)).ToList(), cancellationToken);
            var view = runtime.Images.Snapshots.View(chain);
            var lowers = view.Lower.ToList();
            if (runtime.Images.Snapshots.UpperOf(snapshot.ContainerId) is { } upper) lowers.Insert(0, upper);
            var target = System.IO.Path.Combine(runtime.DirOf(snapshot.ContainerId), "view-" + Guid.NewGuid().ToString("N")[..8]);
            Directory.CreateDirectory(target);
            try
            {
                await new OverlayMount(lowers, null, null).MountAsync(target, cancellationToken);
            }
            catch
            {
                Directory.Delete(target);
                throw;
            }
            return new RootfsAccess(target, target);
        }

        public ValueTask DisposeAsync()
        {
            if (_temporary is not null)
            {
                try
                {
                    OverlayMount.Unmount(_temporary);
                    Directory.Delete(_temporary);
                }
                catch (Exception ex) when (ex is IOException or InvalidOperationException)
                {
                }
            }
            return ValueTask.CompletedTask;
        }
    }

    // ---------------------------------------------------------------- commit

    // POST /commit?container=&repo=&tag=&comment=&author=&changes=&pause=
    private static Task CommitAsync(HttpContext context) => Guarded(context, async () =>
    {
        var query = context.Request.Query;
        if (await SnapshotAsync(context, query["container"].ToString()) is not { } snapshot) return;
        var runtime = Runtime(context);
        var store = runtime.Images;
        // The new layer is content no image references until the commit is recorded: hold off GC.
        using var lease = store.BeginWrite();
        var definition = snapshot.Definition!;

        string? reference = null;
        var repo = query["repo"].ToString();
        if (repo.Length > 0)
        {
            var parsed = ImageReference.Parse(repo);
            if (parsed.Digest is not null) throw new FormatException("refusing to create a tag with a digest reference");
            var tag = query["tag"].ToString();
            parsed = tag.Length > 0 ? parsed.WithTag(tag) : parsed.Tag is null ? parsed.WithTag(ImageReference.DefaultTag) : parsed;
            reference = parsed.ToString();
        }
        var changes = query["changes"].Where(c => !string.IsNullOrWhiteSpace(c)).Select(c => c!).ToList();
        var comment = query["comment"].ToString();
        var author = query["author"].ToString();

        // The container's own config, as Docker commits it, then the --change lines.
        var parentDigest = Digest.Parse(definition.ImageId);
        var parent = store.Content.Exists(parentDigest)
            ? OciJson.Parse<ImageConfigFile>(await store.Content.ReadAllAsync(parentDigest, context.RequestAborted), "image config")
            : new ImageConfigFile();
        var baseConfig = (parent.Config ?? new ContainerConfig()) with
        {
            Cmd = definition.Cmd.ToList(),
            Entrypoint = definition.Entrypoint.Count > 0 ? definition.Entrypoint.ToList() : null,
            Env = definition.Env.Count > 0 ? definition.Env.ToList() : parent.Config?.Env,
            WorkingDir = definition.WorkingDir.Length > 0 ? definition.WorkingDir : parent.Config?.WorkingDir,
            User = definition.User.Length > 0 ? definition.User : parent.Config?.User,
            Labels = definition.Labels.Count > 0 ? definition.Labels.ToDictionary() : parent.Config?.Labels,
            Tty = definition.Tty ? true : null,
            OpenStdin = definition.OpenStdin ? true : null,
            // The container's merged healthcheck and shell, as dockerd commits its config.
            Healthcheck = definition.Healthcheck is { } health
                ? JsonSerializer.SerializeToElement(ContainerCreateRequest.HealthcheckJson(health))
                : parent.Config?.Healthcheck,
            Shell = definition.Shell.Count > 0 ? definition.Shell.ToList() : parent.Config?.Shell,
        };
        var config = DockerfileChange.Apply(baseConfig, changes);

        // The writable layer as an uncompressed tar: its digest is its DiffID. Docker pauses a running
        // container meanwhile (pause=1 by default) so the layer is read consistently.
        Descriptor layer;
        var temp = Path.Combine(runtime.DirOf(snapshot.ContainerId), "commit-" + Guid.NewGuid().ToString("N")[..8] + ".tar");
        var pause = query["pause"].ToString() is not ("0" or "false" or "False") && snapshot.Status == ContainerStatus.Running;
        if (pause) await Containers(context).SendAsync(new PauseContainer(snapshot.ContainerId, Origin(context)));
        try
        {
            await using (var file = File.Create(temp))
            {
                var upper = store.Snapshots.UpperOf(snapshot.ContainerId);
                if (upper is not null) await LayerDiffer.DiffAsync(upper, file, context.RequestAborted);
                else await file.WriteAsync(new byte[1024], context.RequestAborted);
            }
            await using var read = File.OpenRead(temp);
            layer = await store.Content.IngestAsync(read, MediaTypes.OciLayer, cancellationToken: context.RequestAborted);
        }
        finally
        {
            File.Delete(temp);
            if (pause) await Containers(context).SendAsync(new UnpauseContainer(snapshot.ContainerId, Origin(context)));
        }

        var created = DateTimeOffset.UtcNow;
        var diffIds = definition.ImageLayers.Append(layer.Digest.ToString()).ToList();
        var history = (parent.History ?? []).ToList();
        history.Add(new HistoryEntry
        {
            Created = created,
            Author = author.Length > 0 ? author : null,
            CreatedBy = string.Join(' ', definition.Args),
            Comment = comment.Length > 0 ? comment : null,
        });
        var imageConfig = parent with
        {
            Created = created,
            Author = author.Length > 0 ? author : null,
            Config = config,
            RootFs = new RootFs { Type = "layers", DiffIds = diffIds },
            History = history,
            Comment = comment.Length > 0 ? comment : null,
            Container = snapshot.ContainerId,
        };
        var configDescriptor = await store.Content.IngestAsync(OciJson.Serialize(imageConfig), MediaTypes.OciConfig, cancellationToken: context.RequestAborted);
        var layers = diffIds.Select(d => new Descriptor(MediaTypes.OciLayer, Digest.Parse(d), store.Content.SizeOf(Digest.Parse(d)) ?? 0)).ToList();
        var manifest = await store.Content.IngestAsync(LocalManifest.Build(configDescriptor, layers), MediaTypes.OciManifest,
            cancellationToken: context.RequestAborted);
        await store.UnpackAsync(layers, context.RequestAborted);

        var loaded = new LoadedImage(configDescriptor.Digest, configDescriptor.Digest, manifest.Digest, layers,
            reference is null ? [] : [reference], reference is null ? [] : [reference], imageConfig);
        var content = await store.DescribeAsync(loaded, context.RequestAborted) with { Parent = definition.ImageId };
        var info = context.RequestServices.GetRequiredService<GatewayInfo>();
        await context.RequestServices.GetRequiredService<ImageService>().RegisterAsync(new RegisterImage(configDescriptor.Digest.ToString(),
            ImageSource.Committed, content, info.NodeName, comment.Length > 0 ? comment : $"committed from {snapshot.ContainerId[..12]}",
            reference is null ? [] : [reference], Origin(context)), context.RequestAborted);
        await Containers(context).SendAsync(new RecordContainerCommit(snapshot.ContainerId, configDescriptor.Digest.ToString(), reference, Origin(context)));
        await JsonReply.WriteAsync(context, new { Id = configDescriptor.Digest.ToString() }, StatusCodes.Status201Created);
    });

    // ---------------------------------------------------------------- archive (docker cp)

    /// <summary>Go's os.FileMode bits for the stat header.</summary>
    private static uint GoFileMode(TreePathStat stat)
    {
        var mode = stat.Permissions;
        if (stat.IsSymlink) mode |= 1u << 27;
        else if (stat.IsDirectory) mode |= 1u << 31;
        return mode;
    }

    private static string StatHeader(TreePathStat info, string name)
    {
        var stat = new
        {
            name,
            size = info.Size,
            mode = GoFileMode(info),
            mtime = info.ModifiedAt.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.fffffffZ", CultureInfo.InvariantCulture),
            linkTarget = info.LinkTarget,
        };
        return Convert.ToBase64String(JsonSerializer.SerializeToUtf8Bytes(stat));
    }

    // HEAD|GET /containers/{name}/archive?path=
    // The path is looked up from an fd on the rootfs with openat2(RESOLVE_IN_ROOT) and the tree is read by fds
    // (TreeArchiver): a running container cannot swap a directory for a symlink to lead the engine to host files.
    private static Task ArchiveGetAsync(HttpContext context, string name) => Guarded(context, async () =>
    {
        var containerPath = context.Request.Query["path"].ToString();
        if (containerPath.Length == 0) throw new FormatException("path is required");
        if (await SnapshotAsync(context, name) is not { } snapshot) return;
        var runtime = Runtime(context);
        await using var rootfs = await RootfsAccess.OpenAsync(runtime, snapshot, context.RequestAborted);
        using var root = RootHandle.Open(rootfs.Path);
        var path = containerPath.StartsWith('/') ? containerPath : "/" + containerPath;
        var info = TreeArchiver.Stat(root, path) ?? throw DockerErrors.NotFound($"Could not find the file {containerPath} in container {name}");
        var baseName = containerPath.TrimEnd('/') is { Length: > 0 } t ? t[(t.LastIndexOf('/') + 1)..] : "/";
        context.Response.Headers["X-Docker-Container-Path-Stat"] = StatHeader(info, baseName);
        context.Response.StatusCode = StatusCodes.Status200OK;
        if (HttpMethods.IsHead(context.Request.Method)) return;
        context.Response.ContentType = "application/x-tar";
        await using var tar = new TarWriter(context.Response.Body, TarEntryFormat.Pax, leaveOpen: true);
        var entryName = baseName == "/" ? "." : baseName;
        await TreeArchiver.WriteAsync(tar, root, path, entryName, context.RequestAborted);
    });

    // PUT /containers/{name}/archive?path=&noOverwriteDirNonDir=
    // Extracted by the layer unpacker's fd discipline (LayerUnpacker.CopyInto) from an fd on the rootfs.
    private static Task ArchivePutAsync(HttpContext context, string name) => Guarded(context, async () =>
    {
        var containerPath = context.Request.Query["path"].ToString();
        if (containerPath.Length == 0) throw new FormatException("path is required");
        var noOverwriteDirNonDir = Flag(context, "noOverwriteDirNonDir");
        if (await SnapshotAsync(context, name) is not { } snapshot) return;
        var runtime = Runtime(context);
        if (snapshot.Definition!.ReadonlyRootfs)
            throw new OperationRejectedException(RejectionCode.Conflict, "container rootfs is marked read-only");
        // A container that does not run gets its writable rootfs mounted, as a start would; the next start reuses it.
        var live = await runtime.PrepareRootfsAsync(snapshot.ContainerId, snapshot.Definition, context.RequestAborted);
        using var root = RootHandle.Open(live);
        var path = containerPath.StartsWith('/') ? containerPath : "/" + containerPath;
        if (TreeArchiver.Stat(root, path.TrimEnd('/') + "/.") is not { IsDirectory: true })
            throw DockerErrors.NotFound($"Could not find the file {containerPath} in container {name}");
        var (content, _) = await ArchiveCompression.OpenAsync(context.Request.Body, leaveOpen: true, context.RequestAborted);
        await using (content)
        {
            // The unpacker reads synchronously (as for layers): on a pool thread, with sync reads of this body allowed.
            if (context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpBodyControlFeature>() is { } bodyControl)
                bodyControl.AllowSynchronousIO = true;
            await Task.Run(() => LayerUnpacker.CopyInto(content, root, path, noOverwriteDirNonDir, cancellationToken: context.RequestAborted),
                context.RequestAborted);
        }
        context.Response.StatusCode = StatusCodes.Status200OK;
    });
}
