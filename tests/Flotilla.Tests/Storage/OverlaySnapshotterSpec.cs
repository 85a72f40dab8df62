using System.Security.Cryptography;
using System.Text;
using Flotilla.NodeRuntime.Storage;
using Xunit;

namespace Flotilla.Tests.Storage;

public sealed class OverlaySnapshotterSpec
{
    private static byte[] Layer(string file, string content) => new TarBuilder().File(file, content).Bytes();

    [Fact]
    public void Chain_ids_follow_the_oci_definition()
    {
        var d1 = Digest.Of("one"u8);
        var d2 = Digest.Of("two"u8);
        var d3 = Digest.Of("three"u8);
        var chain = OverlaySnapshotter.ChainIds([d1, d2, d3]);
        var c2 = Digest.FromHash(SHA256.HashData(Encoding.ASCII.GetBytes($"{d1} {d2}")));
        var c3 = Digest.FromHash(SHA256.HashData(Encoding.ASCII.GetBytes($"{c2} {d3}")));
        Assert.Equal([d1, c2, c3], chain);
    }

    [Fact]
    public async Task Layers_are_committed_under_their_chain_id_and_found_again_after_a_restart()
    {
        using var s = new LayerScratch();
        var snap = new OverlaySnapshotter(s.Root);
        var (c1, r1) = await snap.ApplyLayerAsync(null, new MemoryStream(Layer("a", "1")));
        var (c2, r2) = await snap.ApplyLayerAsync(c1, new MemoryStream(Layer("b", "2")));
        Assert.Equal(r1.DiffId, c1);
        Assert.Equal(OverlaySnapshotter.ChainIds([r1.DiffId, r2.DiffId])[1], c2);

        var again = new OverlaySnapshotter(s.Root);
        Assert.True(again.Exists(c1));
        Assert.True(again.Exists(c2));
        Assert.Equal("2", File.ReadAllText(Path.Combine(again.PathOf(c2)!, "b")));
        Assert.True(again.UsageOf(c2) >= 1);
        Assert.True(again.Usage() >= 2);
    }

    [Fact]
    public async Task Two_concurrent_unpacks_of_the_same_layer_commit_one_directory()
    {
        using var s = new LayerScratch();
        var snap = new OverlaySnapshotter(s.Root);
        var blob = TarBuilder.Gzip(new TarBuilder().File("big", new string('x', 1 << 20)).File("small", "y").Bytes());
        var results = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => snap.ApplyLayerAsync(null, new MemoryStream(blob))));
        Assert.Single(results.Select(r => r.ChainId).Distinct());
        Assert.Single(Directory.EnumerateDirectories(Path.Combine(snap.Root, "l")));
        Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(snap.Root, "tmp")));
    }

    [Fact]
    public async Task A_layer_whose_diff_id_does_not_match_the_config_is_not_kept()
    {
        using var s = new LayerScratch();
        var snap = new OverlaySnapshotter(s.Root);
        await Assert.ThrowsAsync<DigestMismatchException>(() =>
            snap.ApplyLayerAsync(null, new MemoryStream(Layer("a", "1")), expectedDiffId: Digest.Of("other"u8)));
        Assert.Empty(snap.Layers());
        Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(snap.Root, "l")));
        Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(snap.Root, "tmp")));
    }

    [Fact]
    public async Task Prepare_orders_lowers_top_first_and_the_mount_shows_the_top_layer()
    {
        using var s = new LayerScratch();
        var snap = new OverlaySnapshotter(s.Root);
        var (c1, _) = await snap.ApplyLayerAsync(null, new MemoryStream(new TarBuilder().File("f", "bottom").File("only-bottom", "b").Bytes()));
        var (c2, _) = await snap.ApplyLayerAsync(c1, new MemoryStream(new TarBuilder().File("f", "top").File(".wh.only-bottom", "").Bytes()));
        var mount = snap.Prepare("ctr", [c1, c2]);
        Assert.Equal([snap.PathOf(c2)!, snap.PathOf(c1)!], mount.Lower);
        Assert.Contains("redirect_dir=off,metacopy=off", mount.Options);

        var target = Path.Combine(s.Root, "rootfs");
        await mount.MountAsync(target);
        try
        {
            Assert.Equal("top", File.ReadAllText(Path.Combine(target, "f")));
            Assert.False(File.Exists(Path.Combine(target, "only-bottom")));
            File.WriteAllText(Path.Combine(target, "written"), "w");
        }
        finally
        {
            OverlayMount.Unmount(target);
        }
        Assert.Equal("w", File.ReadAllText(Path.Combine(snap.UpperOf("ctr")!, "written")));
        Assert.True(snap.Remove("ctr"));
        Assert.Null(snap.UpperOf("ctr"));
        Assert.False(snap.Remove("ctr"));
    }

    [Fact]
    public async Task A_single_layer_view_is_a_read_only_bind_mount()
    {
        using var s = new LayerScratch();
        var snap = new OverlaySnapshotter(s.Root);
        var (c1, _) = await snap.ApplyLayerAsync(null, new MemoryStream(Layer("f", "x")));
        var target = Path.Combine(s.Root, "view");
        await snap.View([c1]).MountAsync(target);
        try
        {
            Assert.Equal("x", File.ReadAllText(Path.Combine(target, "f")));
            Assert.ThrowsAny<IOException>(() => File.WriteAllText(Path.Combine(target, "g"), "no"));
        }
        finally
        {
            OverlayMount.Unmount(target);
        }
    }

    [Fact]
    public void Options_that_do_not_fit_in_a_page_are_refused_up_front()
    {
        var lowers = Enumerable.Range(0, 200).Select(i => $"/very/long/data/root/for/flotilla/snapshots/l/{i}/fs").ToList();
        Assert.Throws<InvalidOperationException>(() => new OverlayMount(lowers, "/u", "/w").Options);
        Assert.Throws<InvalidOperationException>(() => new OverlayMount(["/a:b"], "/u", "/w").Options);
    }

    [Theory]
    [InlineData("")]
    [InlineData("../x")]
    [InlineData("a/b")]
    [InlineData(".hidden")]
    public void Container_keys_cannot_name_paths(string key)
    {
        using var s = new LayerScratch();
        Assert.Throws<ArgumentException>(() => new OverlaySnapshotter(s.Root).Prepare(key, []));
    }
}
