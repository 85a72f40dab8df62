using System.Collections.Immutable;
using Flotilla.Contracts.Registry;

namespace Flotilla.Cluster.Registry;

/// <summary>A manifest of a repository: what it needs kept alive, and what the referrers API shows.</summary>
public sealed record ManifestRecord(
    string Digest,
    string MediaType,
    long Size,
    string? Subject,
    string? ArtifactType,
    IReadOnlyDictionary<string, string>? Annotations,
    IReadOnlyList<string> References,
    IReadOnlyList<string> Children);

/// <summary>A registry repository as its events describe it: linked blobs, manifests, tags.</summary>
public sealed record RepositoryState(
    string Repository,
    ImmutableDictionary<string, long> Blobs,
    ImmutableDictionary<string, ManifestRecord> Manifests,
    ImmutableSortedDictionary<string, string> Tags)
{
    public static RepositoryState Empty(string repository) =>
        new(repository, ImmutableDictionary<string, long>.Empty, ImmutableDictionary<string, ManifestRecord>.Empty,
            ImmutableSortedDictionary.Create<string, string>(StringComparer.Ordinal));

    public bool Exists => !Blobs.IsEmpty || !Manifests.IsEmpty;

    public IEnumerable<string> TagsOf(string digest) => Tags.Where(t => t.Value == digest).Select(t => t.Key);
}

public static class RepositoryFold
{
    public static RepositoryState Apply(RepositoryState state, IRepositoryEvent e) => e switch
    {
        BlobLinked b => state with { Blobs = state.Blobs.SetItem(b.Digest, b.Size) },
        BlobUnlinked u => state with { Blobs = state.Blobs.Remove(u.Digest) },
        ManifestPushed m => state with
        {
            Manifests = state.Manifests.SetItem(m.Digest,
                new ManifestRecord(m.Digest, m.MediaType, m.Size, m.Subject, m.ArtifactType, m.Annotations, m.References, m.Children)),
        },
        ManifestTagged t => state with { Tags = state.Tags.SetItem(t.Tag, t.Digest) },
        TagDeleted t => state with { Tags = state.Tags.Remove(t.Tag) },
        ManifestDeleted d => state with
        {
            Manifests = state.Manifests.Remove(d.Digest),
            Tags = state.Tags.RemoveRange(state.TagsOf(d.Digest).ToList()),
        },
        _ => state,
    };

    public static RepositoryState Replay(string repository, IEnumerable<IRepositoryEvent> events) =>
        events.Aggregate(RepositoryState.Empty(repository), Apply);
}
