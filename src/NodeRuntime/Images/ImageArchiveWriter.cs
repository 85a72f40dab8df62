using System.Formats.Tar;
using System.Text;
using Flotilla.NodeRuntime.Storage;

namespace Flotilla.NodeRuntime.Images;

/// <summary>An image to put into an archive: its id (config digest) and the normalized tags to record for it.</summary>
public sealed record ImageToSave(Digest ImageId, IReadOnlyList<string> RepoTags);

/// <summary>
/// <c>docker save</c>: writes images from a <see cref="ContentStore"/> as the Docker 25+ hybrid archive, which is both
/// an OCI image layout (<c>oci-layout</c>, <c>index.json</c>, <c>blobs/sha256</c>) and a docker-archive
/// (<c>manifest.json</c>, <c>repositories</c>). Layers are the uncompressed blobs named by their DiffIDs.
/// </summary>
/// <remarks>
/// Deterministic: entries in lexical path order (as Docker's exporter tars its directory), each blob once,
/// ustar headers with uid/gid 0 and no user names, image blobs dated at the image's <c>created</c>, other entries at
/// the Unix epoch. Blobs are streamed from the store into the output, never held in memory.
/// </remarks>
public sealed class ImageArchiveWriter(ContentStore store)
{
    private static readonly DateTimeOffset Epoch = DateTimeOffset.UnixEpoch;

    public async Task WriteAsync(Stream output, IReadOnlyList<ImageToSave> images, CancellationToken cancellationToken = default)
    {
        if (images.Count == 0) throw new ArgumentException("no images to save", nameof(images));
        var blobs = new SortedDictionary<string, (Digest Digest, DateTimeOffset Time, byte[]? Bytes)>(StringComparer.Ordinal);
        var indexEntries = new List<OciDescriptor>();
        var manifestEntries = new List<DockerArchiveManifestEntry>();
        var repositories = new SortedDictionary<string, SortedDictionary<string, string>>(StringComparer.Ordinal);

        foreach (var image in images.DistinctBy(i => i.ImageId))
        {
            var tags = images.Where(i => i.ImageId == image.ImageId).SelectMany(i => i.RepoTags).Select(RepoTagNames.Normalize).Distinct().ToList();
            if (!store.Exists(image.ImageId)) throw new InvalidOperationException($"image {image.ImageId} is not in the content store");
            var configBytes = await store.ReadAllAsync(image.ImageId, cancellationToken);
            var config = OciJson.Parse<ImageConfigFile>(configBytes, $"config {image.ImageId}");
            var time = config.Created is { } created && created > Epoch ? created : Epoch;
            var configDescriptor = new Descriptor(MediaTypes.OciConfig, image.ImageId, configBytes.Length);
            blobs.TryAdd(image.ImageId.Hex, (image.ImageId, time, null));

            var layers = new List<Descriptor>();
            foreach (var text in config.RootFs.DiffIds)
            {
                var diffId = Digest.Parse(text);
                var size = store.SizeOf(diffId) ?? throw new InvalidOperationException($"layer {diffId} of image {image.ImageId} is not in the content store");
                layers.Add(new Descriptor(MediaTypes.OciLayer, diffId, size));
                blobs.TryAdd(diffId.Hex, (diffId, time, null));
            }
            var manifestBytes = LocalManifest.Build(configDescriptor, layers);
            var manifestDigest = Digest.Of(manifestBytes);
            blobs.TryAdd(manifestDigest.Hex, (manifestDigest, time, manifestBytes));

            var manifestDescriptor = new OciDescriptor { MediaType = MediaTypes.OciManifest, Digest = manifestDigest.ToString(), Size = manifestBytes.Length };
            if (tags.Count == 0) indexEntries.Add(manifestDescriptor);
            foreach (var tag in tags)
            {
                var (repository, tagName) = RepoTagNames.Split(tag);
                indexEntries.Add(manifestDescriptor with
                {
                    Annotations = new Dictionary<string, string>
                    {
                        ["io.containerd.image.name"] = tag,
                        ["org.opencontainers.image.ref.name"] = tagName,
                    },
                });
                if (layers.Count > 0)
                {
                    var familiar = RepoTagNames.FamiliarRepository(repository);
                    if (!repositories.TryGetValue(familiar, out var byTag)) repositories[familiar] = byTag = new(StringComparer.Ordinal);
                    byTag[tagName] = layers[^1].Digest.Hex;
                }
            }
            manifestEntries.Add(new DockerArchiveManifestEntry
            {
                Config = $"blobs/sha256/{image.ImageId.Hex}",
                RepoTags = tags.Select(RepoTagNames.Familiar).ToList(),
                Layers = layers.Select(l => $"blobs/sha256/{l.Digest.Hex}").ToList(),
            });
        }

        var index = new OciIndex { SchemaVersion = 2, MediaType = MediaTypes.OciIndex, Manifests = indexEntries };
        await using var writer = new TarWriter(output, TarEntryFormat.Ustar, leaveOpen: true);
        await WriteDirectoryAsync(writer, "blobs/", cancellationToken);
        await WriteDirectoryAsync(writer, "blobs/sha256/", cancellationToken);
        foreach (var (hex, blob) in blobs)
        {
            if (blob.Bytes is { } bytes)
            {
                await WriteFileAsync(writer, $"blobs/sha256/{hex}", new MemoryStream(bytes, writable: false), blob.Time, cancellationToken);
                continue;
            }
            await using var content = store.OpenRead(blob.Digest);
            await WriteFileAsync(writer, $"blobs/sha256/{hex}", content, blob.Time, cancellationToken);
        }
        await WriteFileAsync(writer, "index.json", OciJson.Serialize(index), Epoch, cancellationToken);
        await WriteFileAsync(writer, "manifest.json", OciJson.Serialize(manifestEntries), Epoch, cancellationToken);
        await WriteFileAsync(writer, "oci-layout", Encoding.UTF8.GetBytes("""{"imageLayoutVersion":"1.0.0"}"""), Epoch, cancellationToken);
        await WriteFileAsync(writer, "repositories", OciJson.Serialize(repositories), Epoch, cancellationToken);
    }

    private static async Task WriteDirectoryAsync(TarWriter writer, string name, CancellationToken cancellationToken)
    {
        var entry = new UstarTarEntry(TarEntryType.Directory, name)
        {
            Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute
                   | UnixFileMode.OtherRead | UnixFileMode.OtherExecute,
            ModificationTime = Epoch,
        };
        await writer.WriteEntryAsync(entry, cancellationToken);
    }

    private static Task WriteFileAsync(TarWriter writer, string name, byte[] bytes, DateTimeOffset time, CancellationToken cancellationToken) =>
        WriteFileAsync(writer, name, new MemoryStream(bytes, writable: false), time, cancellationToken);

    private static async Task WriteFileAsync(TarWriter writer, string name, Stream content, DateTimeOffset time, CancellationToken cancellationToken)
    {
        var entry = new UstarTarEntry(TarEntryType.RegularFile, name)
        {
            Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead,
            ModificationTime = time,
            DataStream = content,
        };
        await writer.WriteEntryAsync(entry, cancellationToken);
    }
}
