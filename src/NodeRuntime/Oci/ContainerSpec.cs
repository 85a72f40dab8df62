namespace Flotilla.NodeRuntime.Oci;

/// <summary>A host path bound into the container.</summary>
public sealed record BindMount(string HostPath, string ContainerPath, bool ReadOnly = false)
{
    /// <summary>rprivate (Docker's default), private, rshared, shared, rslave or slave.</summary>
    public string Propagation { get; init; } = "rprivate";
}

/// <summary>Terminal size in character cells.</summary>
public readonly record struct ConsoleSize(ushort Rows, ushort Columns);

/// <summary>
/// Everything the node runtime needs to run one container, already resolved from the image config and the
/// user's create request. <see cref="RootfsPath"/> is a prepared directory or mount point (the snapshotter's job).
/// </summary>
public sealed record ContainerSpec
{
    /// <summary>64 lowercase hex characters, Docker's container id shape.</summary>
    public required string Id { get; init; }

    /// <summary>The log cap when a container sets none: 100 MiB (dockerd has none; a full disk is worse).</summary>
    public const long DefaultLogSizeMax = 100L << 20;

    /// <summary>conmon's <c>--log-size-max</c>: past it the log file is emptied and written on. 0 = <see cref="DefaultLogSizeMax"/>.</summary>
    public long LogSizeMax { get; init; }
    public string Name { get; init; } = "";
    public required string RootfsPath { get; init; }
    public required IReadOnlyList<string> Args { get; init; }
    public IReadOnlyList<string> Env { get; init; } = [];
    public string WorkingDir { get; init; } = "";

    /// <summary>As the user gave it: "", "uid", "uid:gid", "name", "name:group".</summary>
    public string User { get; init; } = "";

    /// <summary>Defaults to the first 12 characters of <see cref="Id"/>.</summary>
    public string Hostname { get; init; } = "";
    public bool Tty { get; init; }
    public bool OpenStdin { get; init; }
    /// <summary>Docker's StdinOnce: the first attach to end closes stdin — for non-TTY containers only, as in moby.</summary>
    public bool StdinOnce { get; init; }
    public IReadOnlyList<BindMount> Binds { get; init; } = [];

    /// <summary>Memory limit in bytes; 0 = unlimited.</summary>
    public long Memory { get; init; }

    /// <summary>CPU limit in 1e-9 CPUs (Docker's --cpus 1.5 = 1_500_000_000); 0 = unlimited.</summary>
    public long NanoCpus { get; init; }

    /// <summary>Relative CPU weight (cgroup v1 cpu.shares); 0 = default.</summary>
    public long CpuShares { get; init; }

    /// <summary>Maximum number of processes; 0 or less = unlimited.</summary>
    public long PidsLimit { get; init; }
    public bool ReadonlyRootfs { get; init; }
    public IReadOnlyList<string> CapAdd { get; init; } = [];
    public IReadOnlyList<string> CapDrop { get; init; } = [];
    public bool Privileged { get; init; }
    public bool NoNewPrivileges { get; init; }

    /// <summary>"none" (new netns with only loopback), "host", or a path to a network namespace to join.</summary>
    public string NetworkMode { get; init; } = "none";
    public ConsoleSize? ConsoleSize { get; init; }
    public IReadOnlyDictionary<string, string> Labels { get; init; } = new Dictionary<string, string>();

    /// <summary>tmpfs mounts (<c>--tmpfs</c>, <c>--mount type=tmpfs</c>) with the user's options.</summary>
    public IReadOnlyList<Flotilla.Contracts.Containers.ContainerTmpfs> Tmpfs { get; init; } = [];

    /// <summary>Runs the init binary (tini) as PID 1 in front of <see cref="Args"/>, as dockerd's <c>--init</c>.</summary>
    public bool Init { get; init; }

    /// <summary>Size of /dev/shm in bytes; 0 = 64 MiB.</summary>
    public long ShmSize { get; init; }
    public IReadOnlyList<Flotilla.Contracts.Containers.ContainerUlimit> Ulimits { get; init; } = [];
    public IReadOnlyList<string> Dns { get; init; } = [];
    public IReadOnlyList<string> DnsSearch { get; init; } = [];
    public IReadOnlyList<string> DnsOptions { get; init; } = [];

    /// <summary><c>name:ip</c> entries appended to /etc/hosts.</summary>
    public IReadOnlyList<string> ExtraHosts { get; init; } = [];

    /// <summary>Host device nodes to create in the container and allow in its device cgroup (<c>--device</c>).</summary>
    public IReadOnlyList<Flotilla.Contracts.Containers.ContainerDevice> Devices { get; init; } = [];

    public string EffectiveHostname => Hostname.Length > 0 ? Hostname : Id[..Math.Min(12, Id.Length)];

    /// <summary>Throws <see cref="ArgumentException"/> when the spec cannot describe a container.</summary>
    public void Validate()
    {
        Flotilla.Contracts.Containers.ContainerIds.Validate(Id);
        if (Args.Count == 0) throw new ArgumentException("no command specified", nameof(Args));
        if (!Path.IsPathRooted(RootfsPath)) throw new ArgumentException($"rootfs path must be absolute: {RootfsPath}", nameof(RootfsPath));
        if (WorkingDir.Length > 0 && !WorkingDir.StartsWith('/'))
            throw new ArgumentException($"the working directory '{WorkingDir}' is invalid, it needs to be an absolute path", nameof(WorkingDir));
        foreach (var b in Binds)
        {
            if (!Path.IsPathRooted(b.HostPath)) throw new ArgumentException($"bind source must be absolute: {b.HostPath}", nameof(Binds));
            if (!b.ContainerPath.StartsWith('/')) throw new ArgumentException($"bind destination must be absolute: {b.ContainerPath}", nameof(Binds));
            if (b.Propagation is not ("rprivate" or "private" or "rshared" or "shared" or "rslave" or "slave"))
                throw new ArgumentException($"invalid bind propagation: {b.Propagation}", nameof(Binds));
        }
        foreach (var t in Tmpfs)
            if (!t.Destination.StartsWith('/')) throw new ArgumentException($"tmpfs destination must be absolute: {t.Destination}", nameof(Tmpfs));
        if (ShmSize < 0) throw new ArgumentException("SHM size can not be less than 0", nameof(ShmSize));
    }

    public static bool IsContainerId(string id) => Flotilla.Contracts.Containers.ContainerIds.IsValid(id);
}
