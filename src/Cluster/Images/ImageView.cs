namespace Flotilla.Cluster.Images;

/// <summary>Read model of one image. Its projection comes with the image events.</summary>
public sealed class ImageView
{
    public string Id { get; set; } = "";
    public List<string> RepoTags { get; set; } = [];
    public long Size { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
}
