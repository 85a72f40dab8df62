using System.Text.Json;
using Flotilla.Contracts.Images;
using Marten.Events.Aggregation;

namespace Flotilla.Cluster.Images;

/// <summary>Read model of one image, for listings, inspection and name resolution.</summary>
public sealed class ImageView
{
    public string Id { get; set; } = "";
    /// <summary><c>sha256:&lt;hex&gt;</c>.</summary>
    public string ImageId { get; set; } = "";
    public List<string> RepoTags { get; set; } = [];
    public List<string> RepoDigests { get; set; } = [];
    public long Size { get; set; }
    public DateTimeOffset Created { get; set; }
    public string Architecture { get; set; } = "";
    public string Os { get; set; } = "";
    public string ConfigJson { get; set; } = "{}";
    public string? ManifestDigest { get; set; }
    public List<LayerRef> Layers { get; set; } = [];
    public string? Author { get; set; }
    public string? Comment { get; set; }
    public string? Parent { get; set; }
    public List<string> Nodes { get; set; } = [];
    public Dictionary<string, string> Labels { get; set; } = [];
    public DateTimeOffset? LastTagTime { get; set; }
}

public sealed class ImageViewProjection : SingleStreamProjection<ImageView, string>
{
    public static ImageView Create(ImageRegistered e) => Apply(e, new ImageView());

    public static ImageView Apply(ImageRegistered e, ImageView view)
    {
        view.Id = ImageStreams.Key(e.ImageId);
        view.ImageId = e.ImageId;
        view.Size = e.Content.Size;
        view.Created = e.Content.Created;
        view.Architecture = e.Content.Architecture;
        view.Os = e.Content.Os;
        view.ConfigJson = e.Content.ConfigJson;
        view.ManifestDigest = e.Content.ManifestDigest;
        view.Layers = [.. e.Content.Layers];
        view.Author = e.Content.Author;
        view.Comment = e.Content.Comment;
        view.Parent = e.Content.Parent;
        view.Labels = LabelsOf(e.Content.ConfigJson);
        if (!view.Nodes.Contains(e.Node)) view.Nodes.Add(e.Node);
        return view;
    }

    public static ImageView Apply(ImageTagged e, ImageView view)
    {
        if (!view.RepoTags.Contains(e.Reference)) view.RepoTags.Add(e.Reference);
        view.LastTagTime = e.At;
        return view;
    }

    public static ImageView Apply(ImageUntagged e, ImageView view)
    {
        view.RepoTags.Remove(e.Reference);
        return view;
    }

    public static ImageView Apply(ImageReplicated e, ImageView view)
    {
        if (!view.Nodes.Contains(e.Node)) view.Nodes.Add(e.Node);
        return view;
    }

    public static ImageView Apply(ImagePulled e, ImageView view) => AddRepoDigest(view, e.Reference, e.ManifestDigest);

    public static ImageView Apply(ImagePushed e, ImageView view) => AddRepoDigest(view, e.Reference, e.ManifestDigest);

    /// <summary>Docker's RepoDigests: <c>name@manifest-digest</c>, one per repository and digest.</summary>
    private static ImageView AddRepoDigest(ImageView view, string reference, string manifestDigest)
    {
        var name = reference;
        var at = name.IndexOf('@');
        if (at >= 0) name = name[..at];
        var colon = name.LastIndexOf(':');
        if (colon > name.LastIndexOf('/')) name = name[..colon];
        var repoDigest = name + "@" + manifestDigest;
        if (!view.RepoDigests.Contains(repoDigest)) view.RepoDigests.Add(repoDigest);
        return view;
    }

    public static bool ShouldDelete(ImageRemoved e) => true;

    private static Dictionary<string, string> LabelsOf(string configJson)
    {
        try
        {
            using var doc = JsonDocument.Parse(configJson);
            if (doc.RootElement.TryGetProperty("config", out var config) && config.ValueKind == JsonValueKind.Object &&
                config.TryGetProperty("Labels", out var labels) && labels.ValueKind == JsonValueKind.Object)
                return labels.EnumerateObject().Where(p => p.Value.ValueKind == JsonValueKind.String)
                    .ToDictionary(p => p.Name, p => p.Value.GetString()!);
        }
        catch (JsonException)
        {
        }
        return [];
    }
}
