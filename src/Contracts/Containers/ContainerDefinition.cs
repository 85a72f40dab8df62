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

    /// <summary>Entrypoint followed by the command: what runs as PID 1.</summary>
    public IReadOnlyList<string> Args => [.. Entrypoint, .. Cmd];
}

/// <summary>A bind (host path) or a volume (name) mounted into the container.</summary>
[MessagePackObject(true)]
public sealed record ContainerMount(string Type, string Source, string Destination, bool ReadOnly, string? VolumeName);
