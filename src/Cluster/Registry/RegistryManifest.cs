using System.Text.Json;
using Flotilla.Contracts.Registry;
using Flotilla.NodeRuntime.Storage;

namespace Flotilla.Cluster.Registry;

/// <summary>What the registry needs to know of a pushed manifest (the bytes themselves are stored verbatim).</summary>
public sealed record RegistryManifest(
    string MediaType,
    string? Subject,
    string? ArtifactType,
    IReadOnlyDictionary<string, string>? Annotations,
    IReadOnlyList<string> References,
    IReadOnlyList<string> Children)
{
    public const string DockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
    public const string DockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json";
    public const string OciManifest = "application/vnd.oci.image.manifest.v1+json";
    public const string OciIndex = "application/vnd.oci.image.index.v1+json";

    /// <summary>Pushes larger than this are refused (the spec asks registries to accept at least 4 MiB).</summary>
    public const int MaxSize = 4 * 1024 * 1024;

    public static bool IsIndex(string mediaType) => mediaType is OciIndex or DockerManifestList;

    /// <summary>
    /// Validates a manifest: JSON object, <c>schemaVersion</c> 2, a supported media type that agrees with
    /// <c>Content-Type</c>, well-formed descriptors. Throws <see cref="RegistryException"/> (MANIFEST_INVALID).
    /// </summary>
    public static RegistryManifest Parse(ReadOnlySpan<byte> body, string? contentType)
    {
        JsonDocument doc;
        try
        {
            var reader = new Utf8JsonReader(body, new JsonReaderOptions { MaxDepth = 64 });
            doc = JsonDocument.ParseValue(ref reader);
        }
        catch (JsonException ex)
        {
            throw Invalid("manifest is not valid JSON", ex.Message);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw Invalid("manifest is not a JSON object");
            if (!root.TryGetProperty("schemaVersion", out var version) || version.ValueKind != JsonValueKind.Number ||
                !version.TryGetInt32(out var v) || v != 2)
                throw Invalid("schemaVersion must be 2");

            var declared = OptionalString(root, "mediaType");
            var header = MediaTypeOf(contentType);
            if (declared is not null && header is not null && header != declared && header != "application/json")
                throw Invalid($"mediaType {declared} does not match Content-Type {header}");
            var mediaType = declared
                ?? (header is DockerManifest or DockerManifestList or OciManifest or OciIndex ? header : null)
                ?? (root.TryGetProperty("manifests", out _) ? OciIndex : root.TryGetProperty("config", out _) ? OciManifest : null)
                ?? throw Invalid("manifest has no mediaType");

            var subject = root.TryGetProperty("subject", out var s) && s.ValueKind != JsonValueKind.Null ? DescriptorDigest(s, "subject") : null;
            var artifactType = OptionalString(root, "artifactType");
            var annotations = AnnotationsOf(root);

            switch (mediaType)
            {
                case DockerManifest or OciManifest:
                    {
                        if (!root.TryGetProperty("config", out var config) || config.ValueKind != JsonValueKind.Object)
                            throw Invalid("manifest has no config descriptor");
                        var references = new List<string> { DescriptorDigest(config, "config") };
                        if (root.TryGetProperty("layers", out var layers))
                        {
                            if (layers.ValueKind != JsonValueKind.Array) throw Invalid("layers is not an array");
                            foreach (var layer in layers.EnumerateArray())
                            {
                                var digest = DescriptorDigest(layer, "layer");
                                // Foreign (non-distributable) layers live elsewhere: their URLs say where.
                                if (layer.TryGetProperty("urls", out var urls) && urls.ValueKind == JsonValueKind.Array && urls.GetArrayLength() > 0)
                                    continue;
                                references.Add(digest);
                            }
                        }
                        else if (mediaType == DockerManifest)
                        {
                            throw Invalid("manifest has no layers");
                        }
                        artifactType ??= OptionalString(config, "mediaType");
                        return new RegistryManifest(mediaType, subject, artifactType, annotations, references.Distinct().ToList(), []);
                    }
                case DockerManifestList or OciIndex:
                    {
                        if (!root.TryGetProperty("manifests", out var manifests) || manifests.ValueKind != JsonValueKind.Array)
                            throw Invalid("index has no manifests array");
                        var children = manifests.EnumerateArray().Select(m => DescriptorDigest(m, "manifests[]")).Distinct().ToList();
                        return new RegistryManifest(mediaType, subject, artifactType, annotations, [], children);
                    }
                default:
                    throw Invalid($"unsupported manifest media type {mediaType}");
            }
        }
    }

    private static string? MediaTypeOf(string? contentType)
    {
        if (string.IsNullOrWhiteSpace(contentType)) return null;
        var semicolon = contentType.IndexOf(';');
        return (semicolon < 0 ? contentType : contentType[..semicolon]).Trim().ToLowerInvariant();
    }

    private static string DescriptorDigest(JsonElement descriptor, string what)
    {
        if (descriptor.ValueKind != JsonValueKind.Object) throw Invalid($"{what} is not a descriptor");
        var digest = OptionalString(descriptor, "digest");
        if (!Digest.TryParse(digest, out var parsed)) throw Invalid($"{what} has an invalid digest", digest);
        if (!descriptor.TryGetProperty("size", out var size) || size.ValueKind != JsonValueKind.Number || !size.TryGetInt64(out var n) || n < 0)
            throw Invalid($"{what} has an invalid size", digest);
        if (OptionalString(descriptor, "mediaType") is null) throw Invalid($"{what} has no mediaType", digest);
        return parsed.ToString();
    }

    private static string? OptionalString(JsonElement element, string property)
    {
        if (!element.TryGetProperty(property, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        return value.ValueKind == JsonValueKind.String ? value.GetString() : throw Invalid($"{property} is not a string");
    }

    private static Dictionary<string, string>? AnnotationsOf(JsonElement root)
    {
        if (!root.TryGetProperty("annotations", out var annotations) || annotations.ValueKind == JsonValueKind.Null) return null;
        if (annotations.ValueKind != JsonValueKind.Object) throw Invalid("annotations is not an object");
        return annotations.EnumerateObject().ToDictionary(p => p.Name,
            p => p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString()! : throw Invalid($"annotation {p.Name} is not a string"));
    }

    private static RegistryException Invalid(string message, string? detail = null) =>
        new(RegistryErrorCodes.ManifestInvalid, message, detail);
}
