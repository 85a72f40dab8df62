using System.Text.Json;
using Flotilla.Contracts.Containers;

namespace Flotilla.Gateway.DockerApi;

/// <summary>
/// The part of a create request's <c>HostConfig</c> that Flotilla implements, as it is stored in
/// <see cref="ContainerDefinition.HostConfigJson"/> and shown by inspect. Only these fields are kept: a client's
/// other fields (and any junk) never reach an event. Options Flotilla does not implement are not stored either
/// (issue 16 is to refuse them by name).
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
            };
        }
        catch (Exception e) when (e is JsonException or NotSupportedException or InvalidOperationException)
        {
            return Empty;
        }
    }
}
