using System.Text.Json;
using System.Text.Json.Serialization;

namespace Flotilla.NodeRuntime.Images;

/// <summary>Media types of the OCI image spec and Docker's schema 2.</summary>
public static class MediaTypes
{
    public const string OciManifest = "application/vnd.oci.image.manifest.v1+json";
    public const string OciIndex = "application/vnd.oci.image.index.v1+json";
    public const string OciConfig = "application/vnd.oci.image.config.v1+json";
    public const string OciLayer = "application/vnd.oci.image.layer.v1.tar";
    public const string OciLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
    public const string OciLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
    public const string DockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
    public const string DockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json";
    public const string DockerConfig = "application/vnd.docker.container.image.v1+json";
    public const string DockerLayer = "application/vnd.docker.image.rootfs.diff.tar";
    public const string DockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";

    public static bool IsManifest(string? mediaType) => mediaType is OciManifest or DockerManifest;
    public static bool IsIndex(string? mediaType) => mediaType is OciIndex or DockerManifestList;
}

/// <summary>JSON settings for OCI documents: spec names are on the properties, nulls omitted.</summary>
public static class OciJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        PropertyNameCaseInsensitive = false,
        MaxDepth = 64,
    };

    public static byte[] Serialize<T>(T value) => JsonSerializer.SerializeToUtf8Bytes(value, Options);

    /// <summary>Parses untrusted JSON; any malformation is an <see cref="InvalidDataException"/> naming the document.</summary>
    public static T Parse<T>(ReadOnlySpan<byte> json, string what)
    {
        try
        {
            return JsonSerializer.Deserialize<T>(json, Options) ?? throw new InvalidDataException($"{what} is empty (null)");
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"{what} is not valid JSON: {ex.Message}", ex);
        }
    }
}

public sealed record OciDescriptor
{
    [JsonPropertyName("mediaType")] public string MediaType { get; init; } = "";
    [JsonPropertyName("digest")] public string Digest { get; init; } = "";
    [JsonPropertyName("size")] public long Size { get; init; }
    [JsonPropertyName("urls")] public List<string>? Urls { get; init; }
    [JsonPropertyName("annotations")] public Dictionary<string, string>? Annotations { get; init; }
    [JsonPropertyName("platform")] public OciPlatform? Platform { get; init; }
    [JsonPropertyName("artifactType")] public string? ArtifactType { get; init; }
}

public sealed record OciPlatform
{
    [JsonPropertyName("architecture")] public string Architecture { get; init; } = "";
    [JsonPropertyName("os")] public string Os { get; init; } = "";
    [JsonPropertyName("variant")] public string? Variant { get; init; }
    [JsonPropertyName("os.version")] public string? OsVersion { get; init; }
}

/// <summary>An image manifest (OCI, or Docker schema 2 — the same shape).</summary>
public sealed record OciManifest
{
    [JsonPropertyName("schemaVersion")] public int SchemaVersion { get; init; } = 2;
    [JsonPropertyName("mediaType")] public string? MediaType { get; init; }
    [JsonPropertyName("artifactType")] public string? ArtifactType { get; init; }
    [JsonPropertyName("config")] public OciDescriptor Config { get; init; } = new();
    [JsonPropertyName("layers")] public List<OciDescriptor> Layers { get; init; } = [];
    [JsonPropertyName("subject")] public OciDescriptor? Subject { get; init; }
    [JsonPropertyName("annotations")] public Dictionary<string, string>? Annotations { get; init; }
}

/// <summary>An image index / Docker manifest list.</summary>
public sealed record OciIndex
{
    [JsonPropertyName("schemaVersion")] public int SchemaVersion { get; init; } = 2;
    [JsonPropertyName("mediaType")] public string? MediaType { get; init; }
    [JsonPropertyName("artifactType")] public string? ArtifactType { get; init; }
    [JsonPropertyName("manifests")] public List<OciDescriptor> Manifests { get; init; } = [];
    [JsonPropertyName("subject")] public OciDescriptor? Subject { get; init; }
    [JsonPropertyName("annotations")] public Dictionary<string, string>? Annotations { get; init; }
}

/// <summary>The image configuration (OCI image config / Docker image JSON). Its digest is the image id.</summary>
public sealed record ImageConfigFile
{
    [JsonPropertyName("created")] public DateTimeOffset? Created { get; init; }
    [JsonPropertyName("author")] public string? Author { get; init; }
    [JsonPropertyName("architecture")] public string Architecture { get; init; } = "amd64";
    [JsonPropertyName("os")] public string Os { get; init; } = "linux";
    [JsonPropertyName("variant")] public string? Variant { get; init; }
    [JsonPropertyName("config")] public ContainerConfig? Config { get; init; }
    [JsonPropertyName("rootfs")] public RootFs RootFs { get; init; } = new();
    [JsonPropertyName("history")] public List<HistoryEntry>? History { get; init; }
    /// <summary>Docker-only fields, kept so images round-trip.</summary>
    [JsonPropertyName("comment")] public string? Comment { get; init; }
    [JsonPropertyName("docker_version")] public string? DockerVersion { get; init; }
    [JsonPropertyName("container")] public string? Container { get; init; }
    [JsonPropertyName("container_config")] public ContainerConfig? ContainerConfig { get; init; }
}

/// <summary>The <c>config</c> member: how containers of this image run by default.</summary>
public sealed record ContainerConfig
{
    public string? User { get; init; }
    public Dictionary<string, JsonElement>? ExposedPorts { get; init; }
    public List<string>? Env { get; init; }
    public List<string>? Entrypoint { get; init; }
    public List<string>? Cmd { get; init; }
    public Dictionary<string, JsonElement>? Volumes { get; init; }
    public string? WorkingDir { get; init; }
    public Dictionary<string, string>? Labels { get; init; }
    public string? StopSignal { get; init; }
    public List<string>? Shell { get; init; }
    public string? Hostname { get; init; }
    public string? Domainname { get; init; }
    public bool? Tty { get; init; }
    public bool? OpenStdin { get; init; }
    public bool? AttachStdin { get; init; }
    public bool? AttachStdout { get; init; }
    public bool? AttachStderr { get; init; }
    public string? Image { get; init; }
    public List<string>? OnBuild { get; init; }
    public JsonElement? Healthcheck { get; init; }
    public bool? ArgsEscaped { get; init; }
    public int? StopTimeout { get; init; }
}

public sealed record RootFs
{
    [JsonPropertyName("type")] public string Type { get; init; } = "layers";
    [JsonPropertyName("diff_ids")] public List<string> DiffIds { get; init; } = [];
}

public sealed record HistoryEntry
{
    [JsonPropertyName("created")] public DateTimeOffset? Created { get; init; }
    [JsonPropertyName("created_by")] public string? CreatedBy { get; init; }
    [JsonPropertyName("author")] public string? Author { get; init; }
    [JsonPropertyName("comment")] public string? Comment { get; init; }
    [JsonPropertyName("empty_layer")] public bool? EmptyLayer { get; init; }
}
