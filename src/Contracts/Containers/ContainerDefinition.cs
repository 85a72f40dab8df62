using MessagePack;

namespace Flotilla.Contracts.Containers;

/// <summary>Docker's restart policy: <c>no</c>, <c>on-failure[:N]</c>, <c>always</c>, <c>unless-stopped</c>.</summary>
[MessagePackObject(true)]
public sealed record RestartPolicy(RestartPolicyName Name, int MaximumRetryCount)
{
    public static readonly RestartPolicy No = new(RestartPolicyName.No, 0);

    public bool IsNone => Name == RestartPolicyName.No;
}

/// <summary>
/// What a container is, fixed at create: the image's defaults merged with the request (effective
/// entrypoint, command, environment…), plus the host settings. <see cref="ConfigJson"/> and
/// <see cref="HostConfigJson"/> keep Docker's view of both for inspect, built from the fields Flotilla implements
/// (the gateway's <c>StoredHostConfig</c>), never the client's JSON as sent.
/// </summary>
[MessagePackObject(true)]
public sealed record ContainerDefinition(
    string Image,
    string ImageId,
    IReadOnlyList<string> Entrypoint,
    IReadOnlyList<string> Cmd,
    IReadOnlyList<string> Env,
    string WorkingDir,
    string User,
    string Hostname,
    bool Tty,
    bool OpenStdin,
    bool StdinOnce,
    IReadOnlyDictionary<string, string> Labels,
    Signal StopSignal,
    int? StopTimeout,
    IReadOnlyList<ContainerMount> Mounts,
    string NetworkMode,
    long Memory,
    long NanoCpus,
    long CpuShares,
    long PidsLimit,
    RestartPolicy RestartPolicy,
    bool AutoRemove,
    bool ReadonlyRootfs,
    IReadOnlyList<string> CapAdd,
    IReadOnlyList<string> CapDrop,
    bool Privileged,
    bool NoNewPrivileges,
    IReadOnlyList<string> ImageLayers,
    string ConfigJson,
    string HostConfigJson)
{
    /// <summary>A definition with Docker's defaults for everything but the image and command.</summary>
    public static ContainerDefinition Minimal(string image, string imageId, IReadOnlyList<string> cmd,
        IReadOnlyList<string>? env = null, IReadOnlyDictionary<string, string>? labels = null, IReadOnlyList<string>? imageLayers = null) =>
        new(image, imageId, [], cmd, env ?? [], "", "", "", false, false, false, labels ?? new Dictionary<string, string>(),
            Signal.Term, null, [], "none", 0, 0, 0, 0, RestartPolicy.No, false, false, [], [], false, false, imageLayers ?? [], "{}", "{}");

    /// <summary>
    /// <c>--log-opt max-size</c> in bytes; 0 = the engine's default cap. conmon empties the run's log file when it
    /// would pass this size (json-file's behaviour with <c>max-file=1</c>).
    /// </summary>
    public long LogSizeMax { get; init; }

    /// <summary><c>--tmpfs</c> and <c>--mount type=tmpfs</c>: tmpfs file systems mounted at create's paths.</summary>
    public IReadOnlyList<ContainerTmpfs> Tmpfs { get; init; } = [];

    /// <summary><c>--init</c>: a small init (tini) runs as PID 1, forwards signals and reaps zombies.</summary>
    public bool Init { get; init; }

    /// <summary><c>--shm-size</c> in bytes; 0 = Docker's 64 MiB.</summary>
    public long ShmSize { get; init; }

    /// <summary><c>--ulimit</c>: resource limits of the container's processes.</summary>
    public IReadOnlyList<ContainerUlimit> Ulimits { get; init; } = [];

    /// <summary><c>--dns</c>, <c>--dns-search</c>, <c>--dns-option</c>: written into the container's resolv.conf.</summary>
    public IReadOnlyList<string> Dns { get; init; } = [];
    public IReadOnlyList<string> DnsSearch { get; init; } = [];
    public IReadOnlyList<string> DnsOptions { get; init; } = [];

    /// <summary><c>--add-host</c> as <c>name:ip</c>: appended to the container's /etc/hosts.</summary>
    public IReadOnlyList<string> ExtraHosts { get; init; } = [];

    /// <summary><c>--device</c>: host device nodes made in the container and allowed by its device cgroup.</summary>
    public IReadOnlyList<ContainerDevice> Devices { get; init; } = [];
    /// <summary>
    /// Docker's <c>Config.Healthcheck</c>: the image's merged with the request's as dockerd merges them; null = none
    /// configured. A <c>["NONE"]</c> test (<c>--no-healthcheck</c>) is kept, and probes nothing.
    /// </summary>
    public HealthcheckConfig? Healthcheck { get; init; }

    /// <summary>Docker's <c>Config.Shell</c> (request, else image; empty = <c>/bin/sh -c</c>): what runs a CMD-SHELL healthcheck.</summary>
    public IReadOnlyList<string> Shell { get; init; } = [];

    /// <summary>Whether runs of this container are probed (a healthcheck other than NONE).</summary>
    public bool HasHealthProbe() => Healthcheck?.Probes() == true;

    /// <summary>Entrypoint followed by the command: what runs as PID 1.</summary>
    public IReadOnlyList<string> Args => [.. Entrypoint, .. Cmd];
}

/// <summary>A bind (host path) or a volume (name) mounted into the container.</summary>
[MessagePackObject(true)]
public sealed record ContainerMount(string Type, string Source, string Destination, bool ReadOnly, string? VolumeName)
{
    /// <summary>Mount propagation (<c>rslave</c>, <c>shared</c>…); empty = <c>rprivate</c>, Docker's default.</summary>
    public string Propagation { get; init; } = "";
}

/// <summary>A tmpfs at <paramref name="Destination"/>; <paramref name="Options"/> are the user's (size=, mode=, ro…), checked at create.</summary>
[MessagePackObject(true)]
public sealed record ContainerTmpfs(string Destination, IReadOnlyList<string> Options);

/// <summary>One <c>--device</c>: host path, path in the container, cgroup access (<c>rwm</c> or a subset).</summary>
[MessagePackObject(true)]
public sealed record ContainerDevice(string PathOnHost, string PathInContainer, string CgroupPermissions);

/// <summary>One <c>--ulimit</c>: <paramref name="Name"/> as Docker spells it (<c>nofile</c>), soft and hard values.</summary>
[MessagePackObject(true)]
public sealed record ContainerUlimit(string Name, long Soft, long Hard);
