using System.Formats.Tar;
using System.Runtime.InteropServices;
using Flotilla.NodeRuntime.Storage;

namespace Flotilla.NodeRuntime.Images;

/// <summary>
/// <c>docker load</c>: imports an untrusted image archive into a <see cref="ContentStore"/>. Accepts the Docker 25+ hybrid
/// archive, the pre-25 docker-archive (both through <c>manifest.json</c>) and a pure OCI image layout (<c>index.json</c>),
/// as a plain, gzip, xz or zstd tar. Layers may be plain, gzip or zstd; each is stored uncompressed under its DiffID,
/// which must match the config's <c>rootfs.diff_ids</c>.
/// </summary>
/// <remarks>
/// The archive is spooled entry by entry into a private temp directory under the store root (the documents that
/// describe the images may come after the blobs), each entry under a numbered file name, so no archive path is ever
/// used as a file system path. The directory is removed whatever happens. On any failure no image is returned;
/// blobs already published stay, which is harmless since they are content-addressed and verified.
/// </remarks>
public sealed class ImageArchiveReader(ContentStore store, ImageArchiveLimits? limits = null)
{
    private readonly ImageArchiveLimits _limits = limits ?? new ImageArchiveLimits();

    public async Task<IReadOnlyList<LoadedImage>> LoadAsync(Stream archive, CancellationToken cancellationToken = default)
    {
        var spoolDir = Path.Combine(store.Root, "tmp", "load-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(spoolDir);
        try
        {
            var spool = await SpoolAsync(archive, spoolDir, cancellationToken);
            var load = new Load(store, _limits, spool);
            if (spool.Contains("manifest.json")) return await load.FromDockerManifestAsync(cancellationToken);
            if (spool.Contains("index.json")) return await load.FromOciIndexAsync(cancellationToken);
            throw new InvalidDataException("invalid archive: missing manifest.json and index.json");
        }
        finally
        {
            try { Directory.Delete(spoolDir, recursive: true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }

    private async Task<Spool> SpoolAsync(Stream archive, string spoolDir, CancellationToken cancellationToken)
    {
        var spool = new Spool();
        long total = 0;
        int count = 0;
        var (tar, _) = await ArchiveCompression.OpenAsync(archive, leaveOpen: true, cancellationToken);
        await using (tar)
        {
            try
            {
                await using var reader = new TarReader(tar, leaveOpen: true);
                while (await reader.GetNextEntryAsync(copyData: false, cancellationToken) is { } entry)
                {
                    if (++count > _limits.MaxEntries)
                        throw new InvalidDataException($"invalid archive: more than {_limits.MaxEntries} entries");
                    var name = ArchivePath.Normalize(entry.Name)
                        ?? throw new InvalidDataException($"invalid archive: entry '{ArchivePath.Show(entry.Name)}' points outside the archive");
                    if (name.Length == 0) continue; // "./"
                    switch (entry.EntryType)
                    {
                        case TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile:
                            total += entry.Length;
                            if (total > _limits.MaxTotalBytes)
                                throw new InvalidDataException($"invalid archive: content exceeds {_limits.MaxTotalBytes} bytes");
                            var file = Path.Combine(spoolDir, count.ToString("D7", System.Globalization.CultureInfo.InvariantCulture));
                            await CopyEntryAsync(entry, file, cancellationToken);
                            spool.AddFile(name, file, entry.Length);
                            break;
                        case TarEntryType.SymbolicLink:
                            // Relative to the link's directory; an absolute or escaping target is never followed.
                            var dir = name.Contains('/') ? name[..name.LastIndexOf('/')] : "";
                            var target = entry.LinkName.StartsWith('/') ? null
                                : ArchivePath.Normalize(dir.Length == 0 ? entry.LinkName : dir + "/" + entry.LinkName);
                            spool.AddLink(name, target);
                            break;
                        case TarEntryType.HardLink:
                            spool.AddLink(name, ArchivePath.Normalize(entry.LinkName));
                            break;
                        default:
                            break; // directories, devices, fifos: nothing an image archive needs
                    }
                }
            }
            catch (EndOfStreamException) when (count == 0)
            {
                // Empty input: an archive with nothing in it, reported below as missing its documents.
            }
            catch (Exception ex) when (IsMalformation(ex))
            {
                throw new InvalidDataException($"invalid archive: {ex.Message}", ex);
            }
        }
        return spool;
    }

    /// <summary>
    /// Whatever a tar or decompressor throws about bad bytes (each library has its own types); not cancellation,
    /// not our own messages, not permission problems of the store.
    /// </summary>
    internal static bool IsMalformation(Exception ex) =>
        ex is not OperationCanceledException and not UnauthorizedAccessException and not DigestMismatchException
        && !(ex is InvalidDataException && ex.Message.StartsWith("invalid archive", StringComparison.Ordinal));

    private static async Task CopyEntryAsync(TarEntry entry, string file, CancellationToken cancellationToken)
    {
        long copied = 0;
        await using var output = new FileStream(file, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous);
        if (entry.DataStream is { } data)
        {
            var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(1 << 16);
            try
            {
                int n;
                while ((n = await data.ReadAsync(buffer, cancellationToken)) > 0)
                {
                    copied += n;
                    await output.WriteAsync(buffer.AsMemory(0, n), cancellationToken);
                }
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            }
        }
        if (copied != entry.Length)
            throw new InvalidDataException($"invalid archive: unexpected end of archive in '{ArchivePath.Show(entry.Name)}' (truncated?)");
    }

    /// <summary>What the archive holds: archive path → spooled file, plus links between archive paths.</summary>
    private sealed class Spool
    {
        private readonly Dictionary<string, (string File, long Size)> _files = new(StringComparer.Ordinal);
        private readonly Dictionary<string, string?> _links = new(StringComparer.Ordinal);

        public void AddFile(string name, string file, long size)
        {
            _links.Remove(name);
            _files[name] = (file, size);
        }

        public void AddLink(string name, string? target)
        {
            _files.Remove(name);
            _links[name] = target;
        }

        public bool Contains(string name) => TryResolve(name, out _);

        public bool TryResolve(string name, out (string File, long Size) file)
        {
            file = default;
            for (var hops = 0; hops < 32; hops++)
            {
                if (_files.TryGetValue(name, out file)) return true;
                if (!_links.TryGetValue(name, out var target) || target is null) return false;
                name = target;
            }
            return false;
        }
    }

    /// <summary>One load: turns the spooled archive into verified blobs and <see cref="LoadedImage"/>s.</summary>
    private sealed class Load(ContentStore store, ImageArchiveLimits limits, Spool spool)
    {
        private readonly List<LoadedImage> _images = [];

        public async Task<IReadOnlyList<LoadedImage>> FromDockerManifestAsync(CancellationToken cancellationToken)
        {
            var entries = OciJson.Parse<List<DockerArchiveManifestEntry?>>(await ReadDocumentAsync("manifest.json", "manifest.json", cancellationToken),
                "invalid archive: manifest.json");
            if (entries.Count == 0) throw new InvalidDataException("invalid archive: manifest.json lists no images");
            if (entries.Count > limits.MaxImages) throw new InvalidDataException($"invalid archive: more than {limits.MaxImages} images");
            for (var i = 0; i < entries.Count; i++)
            {
                var entry = entries[i] ?? throw new InvalidDataException($"invalid archive: manifest.json entry {i} is null");
                if (string.IsNullOrEmpty(entry.Config)) throw new InvalidDataException($"invalid archive: manifest.json entry {i} has no Config");
                var configPath = Reference(entry.Config, "Config");
                var configBytes = await ReadDocumentAsync(configPath, $"config {entry.Config}", cancellationToken);
                var config = ParseConfig(configBytes, entry.Config);
                var layerPaths = entry.Layers ?? [];
                if (layerPaths.Count != config.RootFs.DiffIds.Count)
                    throw new InvalidDataException(
                        $"invalid archive: layer count mismatch: manifest.json lists {layerPaths.Count} layers, config {entry.Config} has {config.RootFs.DiffIds.Count} diff_ids");
                var layers = new List<Descriptor>(layerPaths.Count);
                for (var l = 0; l < layerPaths.Count; l++)
                {
                    var path = Reference(layerPaths[l], "Layers");
                    layers.Add(await ImportLayerAsync(path, DiffId(config, l), compressed: null, cancellationToken));
                }
                await AddImageAsync(configBytes, config, layers, entry.RepoTags ?? [], cancellationToken);
            }
            return _images;
        }

        public async Task<IReadOnlyList<LoadedImage>> FromOciIndexAsync(CancellationToken cancellationToken)
        {
            var index = OciJson.Parse<OciIndex>(await ReadDocumentAsync("index.json", "index.json", cancellationToken), "invalid archive: index.json");
            if (index.Manifests.Count == 0) throw new InvalidDataException("invalid archive: index.json lists no manifests");
            if (index.Manifests.Count > limits.MaxImages) throw new InvalidDataException($"invalid archive: more than {limits.MaxImages} images");
            foreach (var descriptor in index.Manifests)
            {
                var manifest = await ResolveManifestAsync(descriptor, 0, cancellationToken);
                var configDigest = ParseDigest(manifest.Config.Digest, "manifest config");
                var configBytes = await ReadBlobAsync(manifest.Config, "config", cancellationToken);
                var config = ParseConfig(configBytes, configDigest.ToString());
                if (manifest.Layers.Count != config.RootFs.DiffIds.Count)
                    throw new InvalidDataException(
                        $"invalid archive: layer count mismatch: manifest lists {manifest.Layers.Count} layers, config {configDigest} has {config.RootFs.DiffIds.Count} diff_ids");
                var layers = new List<Descriptor>(manifest.Layers.Count);
                for (var l = 0; l < manifest.Layers.Count; l++)
                {
                    var layer = manifest.Layers[l];
                    var digest = ParseDigest(layer.Digest, $"layer {l}");
                    layers.Add(await ImportLayerAsync(BlobPath(digest), DiffId(config, l), (digest, layer.Size), cancellationToken));
                }
                var tags = new List<string>();
                if (descriptor.Annotations is { } annotations)
                {
                    if (annotations.TryGetValue("io.containerd.image.name", out var name) && !string.IsNullOrEmpty(name)) tags.Add(name);
                    else if (annotations.TryGetValue("org.opencontainers.image.ref.name", out var refName) && LooksLikeReference(refName))
                        tags.Add(refName);
                }
                await AddImageAsync(configBytes, config, layers, tags, cancellationToken);
            }
            return _images;
        }

        // A bare "latest" names a tag but no repository: the image loads untagged, as with containerd without a prefix.
        private static bool LooksLikeReference(string? refName) => !string.IsNullOrEmpty(refName) && (refName.Contains('/') || refName.Contains(':'));

        private async Task<OciManifest> ResolveManifestAsync(OciDescriptor descriptor, int depth, CancellationToken cancellationToken)
        {
            if (depth > limits.MaxIndexDepth) throw new InvalidDataException($"invalid archive: indexes nested deeper than {limits.MaxIndexDepth}");
            if (MediaTypes.IsIndex(descriptor.MediaType))
            {
                var nested = OciJson.Parse<OciIndex>(await ReadBlobAsync(descriptor, "index", cancellationToken), $"invalid archive: index {descriptor.Digest}");
                var candidates = nested.Manifests.Where(m => MediaTypes.IsManifest(m.MediaType) || MediaTypes.IsIndex(m.MediaType)).ToList();
                var chosen = candidates.FirstOrDefault(m => m.Platform is { } p && p.Os == HostPlatform.Os && p.Architecture == HostPlatform.Architecture)
                    ?? (candidates.All(m => m.Platform is null) ? candidates.FirstOrDefault() : null)
                    ?? throw new InvalidDataException(
                        $"invalid archive: index {descriptor.Digest} has no manifest for {HostPlatform.Os}/{HostPlatform.Architecture}");
                return await ResolveManifestAsync(chosen, depth + 1, cancellationToken);
            }
            if (!MediaTypes.IsManifest(descriptor.MediaType))
                throw new InvalidDataException($"invalid archive: unsupported manifest media type '{ArchivePath.Show(descriptor.MediaType)}'");
            var manifest = OciJson.Parse<OciManifest>(await ReadBlobAsync(descriptor, "manifest", cancellationToken), $"invalid archive: manifest {descriptor.Digest}");
            if (manifest.Config is null || string.IsNullOrEmpty(manifest.Config.Digest))
                throw new InvalidDataException($"invalid archive: manifest {descriptor.Digest} has no config");
            if (manifest.Layers is null || manifest.Layers.Count > limits.MaxLayersPerImage)
                throw new InvalidDataException($"invalid archive: manifest {descriptor.Digest} has no layer list or too many layers");
            return manifest;
        }

        private ImageConfigFile ParseConfig(byte[] bytes, string what)
        {
            var config = OciJson.Parse<ImageConfigFile>(bytes, $"invalid archive: config {what}");
            if (config.RootFs is null || config.RootFs.DiffIds is null)
                throw new InvalidDataException($"invalid archive: config {what} has no rootfs.diff_ids");
            if (config.RootFs.Type != "layers")
                throw new InvalidDataException($"invalid archive: config {what} has rootfs type '{ArchivePath.Show(config.RootFs.Type)}', want 'layers'");
            if (config.RootFs.DiffIds.Count > limits.MaxLayersPerImage)
                throw new InvalidDataException($"invalid archive: config {what} has more than {limits.MaxLayersPerImage} layers");
            foreach (var d in config.RootFs.DiffIds) ParseDigest(d, $"config {what} diff_id");
            return config;
        }

        private static Digest DiffId(ImageConfigFile config, int i) => Digest.Parse(config.RootFs.DiffIds[i]);

        private static Digest ParseDigest(string? text, string what) =>
            Digest.TryParse(text, out var d) ? d : throw new InvalidDataException($"invalid archive: {what} has invalid digest '{ArchivePath.Show(text)}'");

        private static string BlobPath(Digest digest) => $"blobs/{digest.Algorithm}/{digest.Hex}";

        /// <summary>An archive path named inside a document; never allowed to leave the archive.</summary>
        private string Reference(string path, string field)
        {
            var normalized = ArchivePath.Normalize(path);
            if (normalized is null || normalized.Length == 0)
                throw new InvalidDataException($"invalid archive: manifest.json {field} path '{ArchivePath.Show(path)}' points outside the archive");
            return normalized;
        }

        private (string File, long Size) Resolve(string path, string what) =>
            spool.TryResolve(path, out var file) ? file
                : throw new InvalidDataException($"invalid archive: {what} '{ArchivePath.Show(path)}' not found in archive");

        private async Task<byte[]> ReadDocumentAsync(string path, string what, CancellationToken cancellationToken)
        {
            var (file, size) = Resolve(path, what);
            if (size > limits.MaxMetadataBytes) throw new InvalidDataException($"invalid archive: {what} is larger than {limits.MaxMetadataBytes} bytes");
            return await File.ReadAllBytesAsync(file, cancellationToken);
        }

        private async Task<byte[]> ReadBlobAsync(OciDescriptor descriptor, string what, CancellationToken cancellationToken)
        {
            var digest = ParseDigest(descriptor.Digest, what);
            var bytes = await ReadDocumentAsync(BlobPath(digest), $"{what} {digest}", cancellationToken);
            var actual = Digest.Of(bytes);
            if (actual != digest) throw new InvalidDataException($"invalid archive: {what} digest mismatch: expected {digest}, got {actual}");
            if (descriptor.Size != bytes.Length)
                throw new InvalidDataException($"invalid archive: {what} {digest} is {bytes.Length} bytes, descriptor says {descriptor.Size}");
            return bytes;
        }

        /// <summary>
        /// Stores one layer uncompressed under its DiffID. With <paramref name="compressed"/> (OCI layout) the archive blob
        /// must also hash to the manifest's digest.
        /// </summary>
        private async Task<Descriptor> ImportLayerAsync(string path, Digest diffId, (Digest Digest, long Size)? compressed, CancellationToken cancellationToken)
        {
            var (file, _) = Resolve(path, "layer");
            if (store.SizeOf(diffId) is { } existing && compressed is null)
                return new Descriptor(MediaTypes.OciLayer, diffId, existing); // already have exactly that content
            var hashing = new HashingReadStream(new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.Asynchronous | FileOptions.SequentialScan));
            await using (hashing)
            {
                Descriptor stored;
                try
                {
                    var (content, _) = await ArchiveCompression.OpenAsync(hashing, leaveOpen: true, cancellationToken);
                    await using (content)
                        stored = store.SizeOf(diffId) is { } size ? new Descriptor(MediaTypes.OciLayer, diffId, size)
                            : await store.IngestAsync(content, MediaTypes.OciLayer, diffId, cancellationToken: cancellationToken);
                }
                catch (DigestMismatchException ex)
                {
                    throw new InvalidDataException(
                        $"invalid archive: layer {ArchivePath.Show(path)} does not match its diff_id: expected {ex.Expected}, got {ex.Actual}", ex);
                }
                catch (Exception ex) when (IsMalformation(ex))
                {
                    throw new InvalidDataException($"invalid archive: layer {ArchivePath.Show(path)} cannot be read: {ex.Message}", ex);
                }
                if (compressed is { } c)
                {
                    var buffer = new byte[1 << 16];
                    while (await hashing.ReadAsync(buffer, cancellationToken) > 0) { }
                    var actual = hashing.Finish();
                    if (actual != c.Digest) throw new InvalidDataException($"invalid archive: layer blob digest mismatch: expected {c.Digest}, got {actual}");
                    if (hashing.BytesRead != c.Size)
                        throw new InvalidDataException($"invalid archive: layer blob {c.Digest} is {hashing.BytesRead} bytes, manifest says {c.Size}");
                }
                return stored;
            }
        }

        private async Task AddImageAsync(byte[] configBytes, ImageConfigFile config, List<Descriptor> layers, IReadOnlyList<string> rawTags,
            CancellationToken cancellationToken)
        {
            var tags = new List<string>(rawTags.Count);
            foreach (var raw in rawTags)
            {
                if (!RepoTagNames.TryNormalize(raw, out var normalized))
                    throw new InvalidDataException($"invalid archive: invalid tag '{ArchivePath.Show(raw)}'");
                tags.Add(normalized);
            }
            var configDescriptor = await store.IngestAsync(configBytes, MediaTypes.OciConfig, cancellationToken: cancellationToken);
            var manifest = await store.IngestAsync(LocalManifest.Build(configDescriptor, layers), MediaTypes.OciManifest, cancellationToken: cancellationToken);
            var id = configDescriptor.Digest;
            var existing = _images.FindIndex(i => i.ImageId == id);
            if (existing >= 0)
            {
                var merged = _images[existing];
                _images[existing] = merged with
                {
                    RepoTags = merged.RepoTags.Concat(tags).Distinct().ToList(),
                    RawRepoTags = merged.RawRepoTags.Concat(rawTags).Distinct().ToList(),
                };
                return;
            }
            _images.Add(new LoadedImage(id, id, manifest.Digest, layers, tags.Distinct().ToList(), rawTags.Distinct().ToList(), config));
        }
    }
}

/// <summary>Paths inside an archive: relative, slash-separated, never escaping the archive root.</summary>
internal static class ArchivePath
{
    /// <summary>Canonical form (<c>./a//b/</c> → <c>a/b</c>, <c>a/../b</c> → <c>b</c>, root → empty), or null when absolute or climbing above the root.</summary>
    public static string? Normalize(string? path)
    {
        if (path is null || path.Contains('\0') || path.StartsWith('/')) return null;
        var parts = new List<string>();
        foreach (var part in path.Split('/'))
        {
            if (part.Length == 0 || part == ".") continue;
            if (part == "..")
            {
                if (parts.Count == 0) return null;
                parts.RemoveAt(parts.Count - 1);
            }
            else parts.Add(part);
        }
        return string.Join('/', parts);
    }

    public static string Show(string? s) => s is null ? "" : s.Length > 120 ? s[..120] + "…" : s;
}

/// <summary>The platform images are chosen for, in OCI spelling.</summary>
public static class HostPlatform
{
    public static string Os => "linux";

    public static string Architecture => RuntimeInformation.OSArchitecture switch
    {
        System.Runtime.InteropServices.Architecture.X64 => "amd64",
        System.Runtime.InteropServices.Architecture.Arm64 => "arm64",
        System.Runtime.InteropServices.Architecture.Arm => "arm",
        System.Runtime.InteropServices.Architecture.X86 => "386",
        System.Runtime.InteropServices.Architecture.S390x => "s390x",
        System.Runtime.InteropServices.Architecture.Ppc64le => "ppc64le",
        System.Runtime.InteropServices.Architecture.RiscV64 => "riscv64",
        System.Runtime.InteropServices.Architecture.LoongArch64 => "loong64",
        _ => RuntimeInformation.OSArchitecture.ToString().ToLowerInvariant(),
    };
}
