using System.Text.Json;
using Flotilla.Contracts.Containers;

namespace Flotilla.Gateway.DockerApi;

/// <summary>
/// The part of a create request's <c>HostConfig</c> that Flotilla implements, as it is stored in
/// <see cref="ContainerDefinition.HostConfigJson"/> and shown by inspect. Only these fields are kept: a client's
/// other fields (and any junk) never reach an event. Options Flotilla does not implement are refused by name at
/// create (<see cref="CreateOptionTable"/>).
/// </summary>
public sealed record StoredHostConfig(
    IReadOnlyList<string> Binds,
    string NetworkMode,
    RestartPolicy RestartPolicy,
    bool AutoRemove,
    bool Privileged,
    bool ReadonlyRootfs,
    IReadOnlyList<string> CapAdd,
    IReadOnlyList<string> CapDrop,
    IReadOnlyList<string> SecurityOpt,
    long Memory,
    long NanoCpus,
    long CpuShares,
    long PidsLimit,
    IReadOnlyList<int> ConsoleSize)
{
    /// <summary><c>--mount</c> entries as given (checked); null when none, as dockerd omits it.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<StoredMount>? Mounts { get; init; }

    /// <summary><c>--tmpfs</c>: path → options; null when none.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyDictionary<string, string>? Tmpfs { get; init; }

    /// <summary><c>--init</c>; null when not asked for, as dockerd shows it.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public bool? Init { get; init; }

    /// <summary>Bytes; 0 in what an older version stored, shown by inspect as the 64 MiB that applies.</summary>
    public long ShmSize { get; init; }
    public IReadOnlyList<StoredUlimit> Ulimits { get; init; } = [];
    public IReadOnlyList<string> Dns { get; init; } = [];
    public IReadOnlyList<string> DnsOptions { get; init; } = [];
    public IReadOnlyList<string> DnsSearch { get; init; } = [];
    public IReadOnlyList<string>? ExtraHosts { get; init; }
    public IReadOnlyList<StoredDevice> Devices { get; init; } = [];

    public static readonly StoredHostConfig Empty = new([], "", RestartPolicy.No, false, false, false, [], [], [], 0, 0, 0, 0, [0, 0]);

    /// <summary>Docker's words for the restart policy, and the "" an older version stored.</summary>
    public static readonly JsonSerializerOptions Json = new() { Converters = { new DockerWords.RestartPolicyNameConverter() } };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>
    /// A stored <c>HostConfigJson</c> read back through this record, so what an older version stored verbatim (any
    /// field a client sent) is not echoed by inspect; unreadable JSON reads as <see cref="Empty"/>.
    /// </summary>
    public static StoredHostConfig Parse(string json)
    {
        try
        {
            var parsed = JsonSerializer.Deserialize<StoredHostConfig>(json, Json);
            return parsed is null ? Empty : parsed with
            {
                Binds = parsed.Binds ?? [],
                NetworkMode = parsed.NetworkMode ?? "",
                RestartPolicy = parsed.RestartPolicy ?? RestartPolicy.No,
                CapAdd = parsed.CapAdd ?? [],
                CapDrop = parsed.CapDrop ?? [],
                SecurityOpt = parsed.SecurityOpt ?? [],
                ConsoleSize = parsed.ConsoleSize is { Count: 2 } size ? size : Empty.ConsoleSize,
                Ulimits = parsed.Ulimits ?? [],
                Dns = parsed.Dns ?? [],
                DnsOptions = parsed.DnsOptions ?? [],
                DnsSearch = parsed.DnsSearch ?? [],
                Devices = parsed.Devices ?? [],
            };
        }
        catch (Exception e) when (e is JsonException or NotSupportedException or InvalidOperationException)
        {
            return Empty;
        }
    }
}

/// <summary>One <c>--device</c> as inspect shows it.</summary>
public sealed record StoredDevice(string PathOnHost, string PathInContainer, string CgroupPermissions);

/// <summary>One <c>--ulimit</c> as inspect shows it.</summary>
public sealed record StoredUlimit(string Name, long Hard, long Soft);
