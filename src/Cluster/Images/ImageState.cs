using System.Collections.Immutable;
using Flotilla.Contracts.Images;

namespace Flotilla.Cluster.Images;

/// <summary>An image as its events describe it.</summary>
public sealed record ImageState(
    string ImageId,
    bool Exists,
    ImageContent? Content,
    ImmutableList<string> RepoTags,
    ImmutableSortedSet<string> Nodes)
{
    public static ImageState Empty(string imageId) => new(imageId, false, null, [], []);
}

public static class ImageFold
{
    public static ImageState Apply(ImageState state, IImageEvent e) => e switch
    {
        ImageRegistered r => state with { Exists = true, Content = r.Content, Nodes = state.Nodes.Add(r.Node) },
        ImageTagged t => state.RepoTags.Contains(t.Reference) ? state : state with { RepoTags = state.RepoTags.Add(t.Reference) },
        ImageUntagged u => state with { RepoTags = state.RepoTags.Remove(u.Reference) },
        ImageReplicated r => state.Exists ? state with { Nodes = state.Nodes.Add(r.Node) } : state,
        ImageRemoved => state with { Exists = false, RepoTags = [], Nodes = [] },
        _ => state,
    };

    public static ImageState Replay(string imageId, IEnumerable<IImageEvent> events) =>
        events.Aggregate(ImageState.Empty(imageId), Apply);
}
