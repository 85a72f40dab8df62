using System.Text.Json.Serialization;
using Flotilla.NodeRuntime.Storage;

namespace Flotilla.NodeRuntime.Images;

/// <summary>
/// An image whose config, uncompressed layers (named by DiffID) and synthesized OCI manifest are in the content store.
/// <paramref name="RepoTags"/> are normalized (<c>docker.io/library/busybox:latest</c>); <paramref name="RawRepoTags"/>
/// are the same tags as the archive spelled them.
/// </summary>
public sealed record LoadedImage(
    Digest ImageId,
    Digest ConfigDigest,
    Digest ManifestDigest,
    IReadOnlyList<Descriptor> Layers,
    IReadOnlyList<string> RepoTags,
    IReadOnlyList<string> RawRepoTags,
    ImageConfigFile Config);

/// <summary>The OCI manifest Flotilla keeps for a locally stored image: config + uncompressed layers.</summary>
public static class LocalManifest
{
    public static byte[] Build(Descriptor config, IEnumerable<Descriptor> layers) =>
        OciJson.Serialize(new OciManifest
        {
            SchemaVersion = 2,
            MediaType = MediaTypes.OciManifest,
            Config = new OciDescriptor { MediaType = MediaTypes.OciConfig, Digest = config.Digest.ToString(), Size = config.Size },
            Layers = layers.Select(l => new OciDescriptor { MediaType = MediaTypes.OciLayer, Digest = l.Digest.ToString(), Size = l.Size }).ToList(),
        });
}

/// <summary>One element of a docker-archive <c>manifest.json</c>.</summary>
public sealed record DockerArchiveManifestEntry
{
    [JsonPropertyName("Config")] public string? Config { get; init; }
    [JsonPropertyName("RepoTags")] public List<string>? RepoTags { get; init; }
    [JsonPropertyName("Layers")] public List<string>? Layers { get; init; }
    [JsonPropertyName("LayerSources")] public Dictionary<string, OciDescriptor>? LayerSources { get; init; }
    [JsonPropertyName("Parent")] public string? Parent { get; init; }
}

/// <summary>Caps that keep an untrusted archive from exhausting disk, memory or time.</summary>
public sealed record ImageArchiveLimits
{
    public int MaxEntries { get; init; } = 100_000;
    public long MaxTotalBytes { get; init; } = 64L << 30;
    /// <summary>manifest.json, index.json, image configs and manifests are read into memory: this is their cap.</summary>
    public int MaxMetadataBytes { get; init; } = 8 << 20;
    public int MaxImages { get; init; } = 1_000;
    public int MaxLayersPerImage { get; init; } = 1_000;
    public int MaxIndexDepth { get; init; } = 8;
}
