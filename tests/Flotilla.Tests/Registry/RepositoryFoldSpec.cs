using Flotilla.Cluster.Registry;
using Flotilla.Contracts.Registry;
using Xunit;

namespace Flotilla.Tests.Registry;

public class RepositoryFoldSpec
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private static ManifestPushed Pushed(string digest, params string[] blobs) =>
        new("r", digest, RegistryManifest.OciManifest, 10, null, null, null, blobs, [], T0);

    [Fact]
    public void Linking_pushing_and_tagging_build_the_repository()
    {
        var state = RepositoryFold.Replay("r",
        [
            new BlobLinked("r", "sha256:c", 2, "upload", T0),
            Pushed("sha256:m", "sha256:c"),
            new ManifestTagged("r", "v1", "sha256:m", null, T0),
            new ManifestTagged("r", "latest", "sha256:m", null, T0),
        ]);
        Assert.True(state.Exists);
        Assert.Equal(2, state.Blobs["sha256:c"]);
        Assert.Equal(["latest", "v1"], state.Tags.Keys);
        Assert.Equal(["sha256:c"], state.Manifests["sha256:m"].References);
    }

    [Fact]
    public void A_moved_tag_names_the_new_manifest()
    {
        var state = RepositoryFold.Replay("r",
            [Pushed("sha256:a"), Pushed("sha256:b"), new ManifestTagged("r", "v1", "sha256:a", null, T0), new ManifestTagged("r", "v1", "sha256:b", "sha256:a", T0)]);
        Assert.Equal("sha256:b", state.Tags["v1"]);
    }

    [Fact]
    public void Deleting_a_manifest_removes_its_tags_and_deleting_a_tag_keeps_the_manifest()
    {
        var state = RepositoryFold.Replay("r",
        [
            Pushed("sha256:a"), Pushed("sha256:b"),
            new ManifestTagged("r", "x", "sha256:a", null, T0), new ManifestTagged("r", "y", "sha256:b", null, T0),
            new TagDeleted("r", "y", "sha256:b", T0),
            new ManifestDeleted("r", "sha256:a", T0),
        ]);
        Assert.Empty(state.Tags);
        Assert.Equal(["sha256:b"], state.Manifests.Keys);
    }

    [Fact]
    public void Unlinking_the_last_blob_of_an_empty_repository_leaves_nothing()
    {
        var state = RepositoryFold.Replay("r", [new BlobLinked("r", "sha256:c", 2, "mount from o", T0), new BlobUnlinked("r", "sha256:c", T0)]);
        Assert.False(state.Exists);
    }
}
