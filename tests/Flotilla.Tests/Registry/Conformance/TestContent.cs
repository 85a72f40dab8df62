using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Flotilla.Tests.Registry.Conformance;

/// <summary>A blob or manifest as pushed: the exact bytes, their digest and media type.</summary>
public sealed record Content(byte[] Bytes, string Digest, string MediaType)
{
    public long Size => Bytes.Length;

    /// <summary>The OCI descriptor of this content (optionally with another media type, e.g. an artifact layer).</summary>
    public JsonObject Descriptor(string? mediaType = null) => new()
    {
        ["mediaType"] = mediaType ?? MediaType,
        ["digest"] = Digest,
        ["size"] = Size,
    };
}

/// <summary>Builds the test content: random blobs, image configs, manifests and indexes with exact bytes.</summary>
public static class TestContent
{
    public const string OciManifest = "application/vnd.oci.image.manifest.v1+json";
    public const string OciIndex = "application/vnd.oci.image.index.v1+json";
    public const string OciConfig = "application/vnd.oci.image.config.v1+json";
    public const string OciLayer = "application/vnd.oci.image.layer.v1.tar+gzip";
    public const string OciEmpty = "application/vnd.oci.empty.v1+json";
    public const string Octets = "application/octet-stream";

    /// <summary>The digest of "hello world": a well-formed digest no check ever pushes.</summary>
    public static readonly string UnknownDigest = Sha256("hello world"u8.ToArray());

    /// <summary>The OCI empty descriptor's blob, <c>{}</c>.</summary>
    public static readonly Content EmptyJson = new("{}"u8.ToArray(), Sha256("{}"u8.ToArray()), OciEmpty);

    public static string Sha256(byte[] bytes) => "sha256:" + Convert.ToHexStringLower(SHA256.HashData(bytes));

    public static Content Blob(byte[] bytes, string mediaType = OciLayer) => new(bytes, Sha256(bytes), mediaType);

    public static Content RandomBlob(int size, string mediaType = OciLayer) => Blob(RandomNumberGenerator.GetBytes(size), mediaType);

    /// <summary>An image config with a random author, so each one has its own digest.</summary>
    public static Content Config() => Json(new JsonObject
    {
        ["architecture"] = "amd64",
        ["os"] = "linux",
        ["author"] = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8)),
        ["rootfs"] = new JsonObject { ["type"] = "layers", ["diff_ids"] = new JsonArray() },
    }, OciConfig);

    public static Content ImageManifest(Content config, IEnumerable<Content> layers, Content? subject = null, string? artifactType = null,
        IReadOnlyDictionary<string, string>? annotations = null, string? configMediaType = null, string? layerMediaType = null)
    {
        var manifest = new JsonObject
        {
            ["schemaVersion"] = 2,
            ["mediaType"] = OciManifest,
        };
        if (artifactType is not null) manifest["artifactType"] = artifactType;
        manifest["config"] = config.Descriptor(configMediaType);
        manifest["layers"] = new JsonArray(layers.Select(l => (JsonNode)l.Descriptor(layerMediaType)).ToArray());
        if (subject is not null) manifest["subject"] = subject.Descriptor();
        if (annotations is not null) manifest["annotations"] = Annotations(annotations);
        return Json(manifest, OciManifest);
    }

    public static Content ImageIndex(IEnumerable<Content> manifests, Content? subject = null, string? artifactType = null,
        IReadOnlyDictionary<string, string>? annotations = null)
    {
        var index = new JsonObject
        {
            ["schemaVersion"] = 2,
            ["mediaType"] = OciIndex,
        };
        if (artifactType is not null) index["artifactType"] = artifactType;
        index["manifests"] = new JsonArray(manifests.Select(m => (JsonNode)m.Descriptor()).ToArray());
        if (subject is not null) index["subject"] = subject.Descriptor();
        if (annotations is not null) index["annotations"] = Annotations(annotations);
        return Json(index, OciIndex);
    }

    private static JsonObject Annotations(IReadOnlyDictionary<string, string> annotations) =>
        new(annotations.Select(a => KeyValuePair.Create(a.Key, (JsonNode?)a.Value)));

    // Indented with tabs like the reference suite: registries must keep and hash the bytes as sent, not re-serialise.
    private static Content Json(JsonNode node, string mediaType)
    {
        var text = node.ToJsonString(new JsonSerializerOptions { WriteIndented = true, IndentCharacter = '\t', IndentSize = 1 });
        var bytes = Encoding.UTF8.GetBytes(text);
        return new Content(bytes, Sha256(bytes), mediaType);
    }
}
