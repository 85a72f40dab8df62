using Flotilla.Contracts.Registry;
using Marten.Events.Aggregation;

namespace Flotilla.Cluster.Registry;

/// <summary>One manifest in <see cref="RepositoryView"/>.</summary>
public sealed class ManifestEntry
{
    public string MediaType { get; set; } = "";
    public long Size { get; set; }
    public string? Subject { get; set; }
    public string? ArtifactType { get; set; }
    public Dictionary<string, string>? Annotations { get; set; }
    public List<string> References { get; set; } = [];
    public List<string> Children { get; set; } = [];
    public DateTimeOffset PushedAt { get; set; }
}

/// <summary>
/// Read model of one registry repository: what the pull side, tags list, referrers, catalog, search
/// and the GC mark phase read, without asking the entity.
/// </summary>
public sealed class RepositoryView
{
    /// <summary>The stream key, <c>repository-&lt;name&gt;</c>.</summary>
    public string Id { get; set; } = "";
    public string Name { get; set; } = "";
    /// <summary>Tag → manifest digest.</summary>
    public Dictionary<string, string> Tags { get; set; } = [];
    /// <summary>Digest → manifest.</summary>
    public Dictionary<string, ManifestEntry> Manifests { get; set; } = [];
    /// <summary>Digest → size of the blobs linked into the repository.</summary>
    public Dictionary<string, long> Blobs { get; set; } = [];
    /// <summary>Holds content (listed by the catalog and search).</summary>
    public bool HasContent { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
}

public sealed class RepositoryViewProjection : SingleStreamProjection<RepositoryView, string>
{
    // One Create/Apply per concrete event: Marten discovers projection methods by their event type.
    public static RepositoryView Create(BlobLinked e) => Fold(new RepositoryView(), e);
    public static RepositoryView Create(BlobUnlinked e) => Fold(new RepositoryView(), e);
    public static RepositoryView Create(ManifestPushed e) => Fold(new RepositoryView(), e);
    public static RepositoryView Create(ManifestTagged e) => Fold(new RepositoryView(), e);
    public static RepositoryView Create(TagDeleted e) => Fold(new RepositoryView(), e);
    public static RepositoryView Create(ManifestDeleted e) => Fold(new RepositoryView(), e);
    public static RepositoryView Apply(BlobLinked e, RepositoryView view) => Fold(view, e);
    public static RepositoryView Apply(BlobUnlinked e, RepositoryView view) => Fold(view, e);
    public static RepositoryView Apply(ManifestPushed e, RepositoryView view) => Fold(view, e);
    public static RepositoryView Apply(ManifestTagged e, RepositoryView view) => Fold(view, e);
    public static RepositoryView Apply(TagDeleted e, RepositoryView view) => Fold(view, e);
    public static RepositoryView Apply(ManifestDeleted e, RepositoryView view) => Fold(view, e);

    private static RepositoryView Fold(RepositoryView view, IRepositoryEvent e)
    {
        view.Id = RepositoryStreams.Key(e.Repository);
        view.Name = e.Repository;
        switch (e)
        {
            case BlobLinked b:
                view.Blobs[b.Digest] = b.Size;
                view.UpdatedAt = b.At;
                break;
            case BlobUnlinked u:
                view.Blobs.Remove(u.Digest);
                view.UpdatedAt = u.At;
                break;
            case ManifestPushed m:
                view.Manifests[m.Digest] = new ManifestEntry
                {
                    MediaType = m.MediaType,
                    Size = m.Size,
                    Subject = m.Subject,
                    ArtifactType = m.ArtifactType,
                    Annotations = m.Annotations?.ToDictionary(),
                    References = [.. m.References],
                    Children = [.. m.Children],
                    PushedAt = m.At,
                };
                view.UpdatedAt = m.At;
                break;
            case ManifestTagged t:
                view.Tags[t.Tag] = t.Digest;
                view.UpdatedAt = t.At;
                break;
            case TagDeleted t:
                view.Tags.Remove(t.Tag);
                view.UpdatedAt = t.At;
                break;
            case ManifestDeleted d:
                view.Manifests.Remove(d.Digest);
                foreach (var tag in view.Tags.Where(t => t.Value == d.Digest).Select(t => t.Key).ToList()) view.Tags.Remove(tag);
                view.UpdatedAt = d.At;
                break;
        }
        view.HasContent = view.Blobs.Count > 0 || view.Manifests.Count > 0;
        return view;
    }
}
