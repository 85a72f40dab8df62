using System.Collections.Concurrent;
using System.Globalization;
using Flotilla.Contracts.Containers;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Oci;
using Flotilla.NodeRuntime.Storage;
using Flotilla.NodeRuntime.Volumes;

namespace Flotilla.NodeRuntime.Containers;

/// <summary>
/// The kernel-facing side of containers on one node: rootfs (overlay of the image's snapshots with the
/// container's own upper dir), bundle and process (through conmon), logs kept across runs, and what a
/// restarted engine finds. Files of one container live in <c>&lt;data&gt;/ctr/&lt;id&gt;/</c>.
/// </summary>
public sealed class NodeContainerRuntime
{
    private readonly string _root;

    /// <param name="contentSource">Where missing image blobs come from (peers); without one a missing layer is an error.</param>
    public NodeContainerRuntime(string dataRoot, NodeImageStore images, ConmonMonitor monitor, IImageContentSource? contentSource = null)
    {
        _root = Path.Combine(dataRoot, "ctr");
        Volumes = new VolumeStore(dataRoot);
        Host.DataRootPermissions.EnsurePrivate(_root);
        Images = images;
        Monitor = monitor;
        ContentSource = contentSource;
    }

    public NodeImageStore Images { get; }

    /// <summary>This node's local volumes: a container's volume mounts resolve here, whatever path its definition holds.</summary>
    public VolumeStore Volumes { get; }

    /// <summary>
    /// The path on this host a mount binds: a volume's directory here (made if missing: the first container that uses
    /// it on this node creates it), or a bind source, whose missing directory is made as Docker does.
    /// </summary>
    private string HostPathOf(ContainerMount mount)
    {
        if (mount is { Type: "volume", VolumeName: { } volume }) return Volumes.Ensure(volume);
        if (mount.Type == "bind" && !Directory.Exists(mount.Source) && !File.Exists(mount.Source)) Directory.CreateDirectory(mount.Source);
        return mount.Source;
    }
    public ConmonMonitor Monitor { get; }
    public IImageContentSource? ContentSource { get; }

    /// <summary>Attachers waiting for a container's next run (docker run / start -a attach before start).</summary>
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<TaskCompletionSource<ContainerAttachment>, byte>> _waitingAttachers = new();

    /// <summary>
    /// An attachment to the container's next run, connected to conmon's attach socket after <c>runc create</c> and
    /// before <c>runc start</c>, so no output of the process is missed. Cancel to give up; an attachment that
    /// arrives after the cancellation is disposed.
    /// </summary>
    public async Task<ContainerAttachment> AttachToNextRunAsync(string id, CancellationToken cancellationToken)
    {
        var waiting = new TaskCompletionSource<ContainerAttachment>(TaskCreationOptions.RunContinuationsAsynchronously);
        var set = _waitingAttachers.GetOrAdd(id, _ => new());
        set[waiting] = 0;
        await using var registration = cancellationToken.Register(() =>
        {
            set.TryRemove(waiting, out _);
            if (!waiting.TrySetCanceled(cancellationToken) && waiting.Task.IsCompletedSuccessfully) waiting.Task.Result.Dispose();
        });
        return await waiting.Task;
    }

    /// <summary>Hands the waiting attachers their connection to the just created (not yet started) container.</summary>
    private async Task ConnectWaitingAttachersAsync(string id)
    {
        if (!_waitingAttachers.TryGetValue(id, out var set)) return;
        foreach (var waiting in set.Keys)
        {
            if (!set.TryRemove(waiting, out _)) continue;
            try
            {
                var attachment = await Monitor.AttachAsync(id);
                if (!waiting.TrySetResult(attachment)) attachment.Dispose();
            }
            catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or UnauthorizedAccessException)
            {
                waiting.TrySetException(ex);
            }
        }
    }

    public string DirOf(string id) => Path.Combine(_root, ContainerIds.Validate(id));
    public string RootfsOf(string id) => Path.Combine(DirOf(id), "rootfs");
    private string GenerationFile(string id) => Path.Combine(DirOf(id), "generation");
    private string LogArchive(string id) => Path.Combine(DirOf(id), "logs");

    /// <summary>The run generation recorded for a container's current process, if any.</summary>
    public long? GenerationOf(string id) =>
        File.Exists(GenerationFile(id)) && long.TryParse(File.ReadAllText(GenerationFile(id)), CultureInfo.InvariantCulture, out var g) ? g : null;

    /// <summary>Containers this node has files for (a restarted engine re-adopts them).</summary>
    public IReadOnlyList<string> Known() =>
        Directory.EnumerateDirectories(_root).Select(Path.GetFileName).Where(n => n is not null && ContainerSpec.IsContainerId(n)).Select(n => n!).ToList();

    /// <summary>
    /// Stops every container of this node that has not exited (TERM, then KILL after <paramref name="grace"/>), all at
    /// once; returns how many were stopped. Used when the node leaves the cluster and its containers move elsewhere.
    /// </summary>
    public async Task<int> StopAllAsync(TimeSpan grace, CancellationToken cancellationToken = default)
    {
        var running = Known().Where(id => Monitor.ReadExit(id) is null && Monitor.ConmonPid(id) is not null).ToList();
        await Task.WhenAll(running.Select(async id =>
        {
            try
            {
                await Monitor.StopAsync(id, grace, cancellationToken: cancellationToken);
            }
            catch (Exception ex) when (ex is OciRuntimeException or InvalidOperationException or IOException)
            {
                // Gone already, or its monitor died: nothing of it runs.
            }
        }));
        return running.Count;
    }

    /// <summary>Prepares the rootfs and starts run <paramref name="generation"/>; returns the init pid.</summary>
    public async Task<int> RunAsync(string id, string name, long generation, ContainerDefinition definition, CancellationToken cancellationToken = default)
    {
        try
        {
            return await CreateAndStartAsync(id, name, generation, definition, cancellationToken);
        }
        catch (Exception ex)
        {
            FailWaitingAttachers(id, ex);
            throw;
        }
    }

    private async Task<int> CreateAndStartAsync(string id, string name, long generation, ContainerDefinition definition, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(DirOf(id));
        var rootfs = await PrepareRootfsAsync(id, definition, cancellationToken);

        // A new run starts from a clean runtime state; the previous run's log is kept for `docker logs`.
        var paths = Monitor.PathsFor(id);
        if (File.Exists(paths.Log))
        {
            Directory.CreateDirectory(LogArchive(id));
            File.Move(paths.Log, Path.Combine(LogArchive(id), $"{generation - 1:D8}.log"), overwrite: true);
        }
        // Only an earlier run leaves runtime state behind; a first run skips the ~25 ms `runc delete`.
        if (Directory.Exists(paths.Root)) await Monitor.RemoveAsync(id, cancellationToken);

        var spec = new ContainerSpec
        {
            Id = id,
            Name = name,
            RootfsPath = rootfs,
            Args = definition.Args,
            Env = definition.Env,
            WorkingDir = definition.WorkingDir,
            User = definition.User,
            Hostname = definition.Hostname,
            Tty = definition.Tty,
            OpenStdin = definition.OpenStdin,
            StdinOnce = definition.StdinOnce,
            Binds = definition.Mounts.Select(m => new BindMount(HostPathOf(m), m.Destination, m.ReadOnly) { Propagation = m.Propagation is { Length: > 0 } p ? p : "rprivate" }).ToList(),
            Memory = definition.Memory,
            NanoCpus = definition.NanoCpus,
            CpuShares = definition.CpuShares,
            PidsLimit = definition.PidsLimit,
            ReadonlyRootfs = definition.ReadonlyRootfs,
            CapAdd = definition.CapAdd,
            CapDrop = definition.CapDrop,
            Privileged = definition.Privileged,
            NoNewPrivileges = definition.NoNewPrivileges,
            NetworkMode = definition.NetworkMode switch
            {
                "host" => "host",
                "none" or "default" or "bridge" or "" => "none",
                // Refused at start by the API; a restart must not quietly run it without its network either.
                var other => throw new InvalidOperationException($"failed to set up container networking: network {other} not found"),
            },
            Labels = definition.Labels,
            ConsoleSize = ConsoleSizeOf(definition),
            LogSizeMax = definition.LogSizeMax,
            Tmpfs = definition.Tmpfs,
            Init = definition.Init,
            ShmSize = definition.ShmSize,
            Ulimits = definition.Ulimits,
            Dns = definition.Dns,
            DnsSearch = definition.DnsSearch,
            DnsOptions = definition.DnsOptions,
            ExtraHosts = definition.ExtraHosts,
            Devices = definition.Devices,
        };
        await File.WriteAllTextAsync(GenerationFile(id), generation.ToString(CultureInfo.InvariantCulture), cancellationToken);
        var pid = await Monitor.CreateAsync(spec, cancellationToken);
        await ConnectWaitingAttachersAsync(id);
        await Monitor.StartAsync(id, cancellationToken);
        return pid;
    }

    /// <summary>
    /// The run did not come about: its waiting attachers end now (as dockerd closes the streams of a container that
    /// failed to start), so <c>docker run</c> prints the start error instead of waiting for output that never comes.
    /// </summary>
    private void FailWaitingAttachers(string id, Exception reason)
    {
        if (!_waitingAttachers.TryGetValue(id, out var set)) return;
        foreach (var waiting in set.Keys)
            if (set.TryRemove(waiting, out _))
                waiting.TrySetException(new IOException("the container did not start: " + reason.Message, reason));
    }

    /// <summary>
    /// The terminal size the client asked for at create (HostConfig.ConsoleSize = [rows, columns]): a TTY
    /// starts at that size, so a shell is right even before the client's first resize arrives.
    /// </summary>
    private static ConsoleSize? ConsoleSizeOf(ContainerDefinition definition)
    {
        if (!definition.Tty) return null;
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(definition.HostConfigJson);
            if (doc.RootElement.TryGetProperty("ConsoleSize", out var size) && size.ValueKind == System.Text.Json.JsonValueKind.Array &&
                size.GetArrayLength() == 2 && size[0].TryGetUInt16(out var rows) && size[1].TryGetUInt16(out var columns) && rows > 0 && columns > 0)
                return new ConsoleSize(rows, columns);
        }
        catch (System.Text.Json.JsonException)
        {
        }
        return null;
    }

    /// <summary>Mounts the image's layers with the container's own upper dir at <c>ctr/&lt;id&gt;/rootfs</c> (once).</summary>
    public async Task<string> PrepareRootfsAsync(string id, ContainerDefinition definition, CancellationToken cancellationToken)
    {
        var target = RootfsOf(id);
        if (IsMountPoint(target)) return target;
        var layers = definition.ImageLayers.Select(Digest.Parse).ToList();
        var missing = layers.Where(l => !Images.Content.Exists(l)).ToList();
        if (missing.Count > 0)
        {
            if (ContentSource is null)
                throw new ImageUnavailableException($"image {definition.ImageId} is not stored on this node (layer {missing[0]} missing)");
            // The config comes along, so save, commit and inspect work here afterwards; it is not needed to run.
            var config = Digest.TryParse(definition.ImageId, out var c) ? c.ToString() : null;
            await ContentSource.EnsureAsync(definition.ImageId, config, layers, cancellationToken);
        }
        var chain = await Images.UnpackAsync(layers.Select(l => new Descriptor(MediaTypes.OciLayer, l, 0)).ToList(), cancellationToken);
        var mount = Images.Snapshots.Prepare(id, chain);
        Directory.CreateDirectory(target);
        await mount.MountAsync(target, cancellationToken);
        return target;
    }

    public static bool IsMountPoint(string path)
    {
        var full = Path.GetFullPath(path).TrimEnd('/');
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            var fields = line.Split(' ');
            if (fields.Length > 4 && Unescape(fields[4]) == full) return true;
        }
        return false;
    }

    private static string Unescape(string s) => s.Replace("\\040", " ").Replace("\\011", "\t").Replace("\\012", "\n").Replace("\\134", "\\");

    /// <summary>Removes the process state, unmounts the rootfs and drops the writable layer and logs.</summary>
    public async Task RemoveAsync(string id, CancellationToken cancellationToken = default)
    {
        await Monitor.RemoveAsync(id, cancellationToken);
        var rootfs = RootfsOf(id);
        if (IsMountPoint(rootfs)) OverlayMount.Unmount(rootfs);
        Images.Snapshots.Remove(id);
        if (Directory.Exists(DirOf(id))) Directory.Delete(DirOf(id), recursive: true);
    }

    /// <summary>Every log file of the container, oldest run first.</summary>
    public IReadOnlyList<string> LogFiles(string id)
    {
        var files = Directory.Exists(LogArchive(id)) ? Directory.GetFiles(LogArchive(id), "*.log").Order(StringComparer.Ordinal).ToList() : [];
        var current = Monitor.PathsFor(id).Log;
        if (File.Exists(current)) files.Add(current);
        return files;
    }
}
