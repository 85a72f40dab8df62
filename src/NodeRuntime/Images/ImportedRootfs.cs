using System.Formats.Tar;
using Flotilla.NodeRuntime.Storage;

namespace Flotilla.NodeRuntime.Images;

/// <summary>Options of <c>docker import</c>: <c>-c/--change</c> lines, <c>-m/--message</c>, and the platform to record.</summary>
public sealed record ImportOptions
{
    public IReadOnlyList<string> Changes { get; init; } = [];
    /// <summary>History and config comment; Docker's default for stdin is "Imported from -".</summary>
    public string? Message { get; init; }
    public DateTimeOffset? Created { get; init; }
    public string? Os { get; init; }
    public string? Architecture { get; init; }
    public IReadOnlyList<string> RepoTags { get; init; } = [];
}

/// <summary>
/// <c>docker import</c>: a root file system tar (plain, gzip, xz, zstd) becomes a one-layer image. The layer is stored
/// uncompressed under its DiffID, then the config (changes applied) and the local OCI manifest are stored too.
/// </summary>
public static class ImportedRootfs
{
    public static async Task<LoadedImage> ImportAsync(ContentStore store, Stream rootfs, ImportOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        options ??= new ImportOptions();
        // Changes first: a bad --change must not cost a whole upload.
        var containerConfig = DockerfileChange.Apply(null, options.Changes);
        var tags = options.RepoTags.Select(RepoTagNames.Normalize).Distinct().ToList();

        Descriptor layer;
        var (content, _) = await ArchiveCompression.OpenAsync(rootfs, leaveOpen: true, cancellationToken);
        await using (content)
        {
            try
            {
                layer = await store.IngestAsync(content, MediaTypes.OciLayer, cancellationToken: cancellationToken);
            }
            catch (Exception ex) when (ImageArchiveReader.IsMalformation(ex))
            {
                throw new InvalidDataException($"invalid rootfs archive: {ex.Message}", ex);
            }
        }
        await EnsureTarAsync(store, layer.Digest, cancellationToken);

        var created = options.Created ?? DateTimeOffset.UtcNow;
        var message = options.Message ?? "Imported from -";
        var config = new ImageConfigFile
        {
            Created = created,
            Architecture = options.Architecture ?? HostPlatform.Architecture,
            Os = options.Os ?? HostPlatform.Os,
            Config = containerConfig,
            RootFs = new RootFs { Type = "layers", DiffIds = [layer.Digest.ToString()] },
            History = [new HistoryEntry { Created = created, Comment = message }],
            Comment = message,
        };
        var configDescriptor = await store.IngestAsync(OciJson.Serialize(config), MediaTypes.OciConfig, cancellationToken: cancellationToken);
        var manifest = await store.IngestAsync(LocalManifest.Build(configDescriptor, [layer]), MediaTypes.OciManifest, cancellationToken: cancellationToken);
        return new LoadedImage(configDescriptor.Digest, configDescriptor.Digest, manifest.Digest, [layer], tags, options.RepoTags.ToList(), config);
    }

    /// <summary>Walks the stored layer as a tar: garbage must not become an image.</summary>
    private static async Task EnsureTarAsync(ContentStore store, Digest layer, CancellationToken cancellationToken)
    {
        try
        {
            await using var stream = store.OpenRead(layer);
            await using var reader = new TarReader(stream);
            while (await reader.GetNextEntryAsync(copyData: false, cancellationToken) is not null) { }
        }
        catch (Exception ex) when (ImageArchiveReader.IsMalformation(ex))
        {
            throw new InvalidDataException($"invalid rootfs archive: not a tar file: {ex.Message}", ex);
        }
    }
}
