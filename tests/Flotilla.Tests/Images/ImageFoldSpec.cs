using Flotilla.Cluster.Images;
using Flotilla.Contracts.Images;
using Xunit;

namespace Flotilla.Tests.Images;

public class ImageFoldSpec
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);
    private const string Id = "sha256:aaaa";

    private static ImageRegistered Registered(string node = "n1") => new(Id, ImageSource.Imported,
        new ImageContent(Id, null, [new LayerRef("sha256:l1", 100)], 100, T0, "amd64", "linux", "{}", null, null, null), node, null, T0);

    [Fact]
    public void Pulls_and_pushes_are_history_only()
    {
        var before = ImageFold.Replay(Id, [Registered(), new ImageTagged(Id, "127.0.0.1:5000/a:1", T0)]);
        var after = ImageFold.Replay(Id, [Registered(), new ImageTagged(Id, "127.0.0.1:5000/a:1", T0),
            new ImagePulled(Id, "127.0.0.1:5000/a:1", "sha256:m", "127.0.0.1:5000", T0),
            new ImagePushed(Id, "127.0.0.1:5000/b:1", "sha256:m", "127.0.0.1:5000", T0)]);
        Assert.Equal(before.RepoTags, after.RepoTags);
        Assert.Equal(before.Nodes, after.Nodes);
        Assert.True(after.Exists);
    }

    [Fact]
    public void Registered_makes_the_image_exist_on_that_node()
    {
        var s = ImageFold.Replay(Id, [Registered("n1"), Registered("n2")]);
        Assert.True(s.Exists);
        Assert.Equal(["n1", "n2"], s.Nodes);
        Assert.Equal(100, s.Content!.Size);
    }

    [Fact]
    public void Tags_are_a_set_in_tagging_order_and_untag_removes_one()
    {
        var s = ImageFold.Replay(Id,
        [
            Registered(),
            new ImageTagged(Id, "docker.io/library/a:1", T0),
            new ImageTagged(Id, "docker.io/library/b:1", T0),
            new ImageTagged(Id, "docker.io/library/a:1", T0),
            new ImageUntagged(Id, "docker.io/library/b:1", "rmi", T0),
        ]);
        Assert.Equal(["docker.io/library/a:1"], s.RepoTags);
    }

    [Fact]
    public void Removed_clears_everything_and_a_new_registration_brings_it_back()
    {
        var removed = ImageFold.Replay(Id, [Registered(), new ImageTagged(Id, "x:1", T0), new ImageRemoved(Id, T0)]);
        Assert.False(removed.Exists);
        Assert.Empty(removed.RepoTags);
        Assert.Empty(removed.Nodes);

        var back = ImageFold.Apply(removed, Registered("n3"));
        Assert.True(back.Exists);
        Assert.Equal(["n3"], back.Nodes);
    }

    [Fact]
    public void Replicated_adds_the_receiving_node_but_never_brings_a_removed_image_back()
    {
        var s = ImageFold.Replay(Id, [Registered("n1"), new ImageReplicated(Id, "n2", ["n1"], 100, T0), new ImageReplicated(Id, "n2", ["n1"], 100, T0)]);
        Assert.Equal(["n1", "n2"], s.Nodes);

        var removed = ImageFold.Replay(Id, [Registered("n1"), new ImageRemoved(Id, T0), new ImageReplicated(Id, "n2", ["n1"], 100, T0)]);
        Assert.False(removed.Exists);
        Assert.Empty(removed.Nodes);
    }
}
