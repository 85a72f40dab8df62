using System.Formats.Tar;
using System.Text;
using Flotilla.NodeRuntime.Storage;
using Xunit;

namespace Flotilla.Tests.Storage;

/// <summary>unpack → overlay mount → change things through the mount → diff the upper dir → apply the diff → same tree.</summary>
public sealed class LayerRoundTripSpec
{
    private static byte[] BaseLayer() => new TarBuilder()
        .Dir("a/").Dir("a/sub/").File("a/f1", "one").File("a/sub/f2", "two")
        .Dir("b/").File("b/keep", "keep").File("b/gone", "gone")
        .File("c.txt", "c")
        .Dir("ren/").File("ren/x", "x")
        .File("exe", "#!", (UnixFileMode)Convert.ToInt32("4755", 8), uid: 7, gid: 8)
        .Symlink("s", "c.txt")
        .Bytes();

    [Fact]
    public async Task Changes_made_through_an_overlay_mount_survive_diff_and_apply()
    {
        using var s = new LayerScratch();
        var snap = new OverlaySnapshotter(s.Root);
        var (chain1, _) = await snap.ApplyLayerAsync(null, new MemoryStream(BaseLayer()));
        var mount = snap.Prepare("ctr1", [chain1]);
        var m = Path.Combine(s.Root, "m");
        await mount.MountAsync(m);
        try
        {
            Directory.CreateDirectory(Path.Combine(m, "new"));
            File.WriteAllText(Path.Combine(m, "new/file"), "fresh");
            var x = "v\u00e9"u8.ToArray();
            Assert.Equal(0, Native.lsetxattr(Path.Combine(m, "new/file"), "user.note", x, (nuint)x.Length, 0));
            File.WriteAllText(Path.Combine(m, "a/f1"), "one, changed");
            Directory.Delete(Path.Combine(m, "a/sub"), recursive: true);
            Directory.Delete(Path.Combine(m, "b"), recursive: true);
            Directory.CreateDirectory(Path.Combine(m, "b"));
            File.WriteAllText(Path.Combine(m, "b/only"), "only");
            File.Move(Path.Combine(m, "c.txt"), Path.Combine(m, "d.txt"));
            // redirect_dir=off: renaming a lower dir is EXDEV, so copy + delete as mv does.
            Directory.CreateDirectory(Path.Combine(m, "ren2"));
            File.Copy(Path.Combine(m, "ren/x"), Path.Combine(m, "ren2/x"));
            Directory.Delete(Path.Combine(m, "ren"), recursive: true);
            File.SetUnixFileMode(Path.Combine(m, "exe"), (UnixFileMode)Convert.ToInt32("0700", 8));
            File.WriteAllText(Path.Combine(m, "h1"), "linked");
            Assert.Equal(0, Native.linkat(Native.AT_FDCWD, Path.Combine(m, "h1"), Native.AT_FDCWD, Path.Combine(m, "h2"), 0));
            File.CreateSymbolicLink(Path.Combine(m, "s2"), "/nowhere");
        }
        finally
        {
            OverlayMount.Unmount(m);
        }

        var upper = snap.UpperOf("ctr1")!;
        var tar = new MemoryStream();
        var (diffId, size) = LayerDiffer.Diff(upper, tar);
        Assert.Equal(Digest.Of(tar.ToArray()), diffId);
        Assert.Equal(tar.Length, size);
        Assert.Equal(diffId, LayerDiffer.Diff(upper, new MemoryStream()).DiffId); // deterministic

        var names = Names(tar.ToArray());
        Assert.Contains("a/.wh.sub", names);
        Assert.Contains(".wh.c.txt", names);
        Assert.Contains(".wh.ren", names);
        Assert.Equal(names.IndexOf("b/") + 1, names.IndexOf("b/.wh..wh..opq"));
        Assert.DoesNotContain(names, n => n.StartsWith("a/sub/", StringComparison.Ordinal));

        var (chain2, applied) = await snap.ApplyLayerAsync(chain1, new MemoryStream(tar.ToArray()), expectedDiffId: diffId);
        Assert.Equal(diffId, applied.DiffId);

        var expected = Path.Combine(s.Root, "expected");
        var actual = Path.Combine(s.Root, "actual");
        await new OverlayMount([upper, snap.PathOf(chain1)!], null, null).MountAsync(expected);
        await snap.View([chain1, chain2]).MountAsync(actual);
        try
        {
            var want = Tree(expected);
            var got = Tree(actual);
            Assert.Equal(want.Keys.Order(StringComparer.Ordinal), got.Keys.Order(StringComparer.Ordinal));
            foreach (var (path, desc) in want) Assert.Equal((path, desc), (path, got[path]));
            Assert.Contains("b/only", want.Keys);
            Assert.DoesNotContain("b/keep", want.Keys);
            var h1 = LayerUnpackerSpec.Stat(Path.Combine(actual, "h1"));
            Assert.Equal(h1.Ino, LayerUnpackerSpec.Stat(Path.Combine(actual, "h2")).Ino);
        }
        finally
        {
            OverlayMount.Unmount(expected);
            OverlayMount.Unmount(actual);
        }
    }

    private static List<string> Names(byte[] tar)
    {
        var names = new List<string>();
        using var reader = new TarReader(new MemoryStream(tar));
        while (reader.GetNextEntry() is { } e) names.Add(e.Name);
        return names;
    }

    /// <summary>Every path under a root with what a container would see of it.</summary>
    private static Dictionary<string, string> Tree(string root)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var path in Directory.EnumerateFileSystemEntries(root, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 }))
        {
            var rel = Path.GetRelativePath(root, path);
            var st = LayerUnpackerSpec.Stat(path);
            var d = new StringBuilder($"type={st.Type:x} mode={Convert.ToString(st.Permissions, 8)} uid={st.Uid} gid={st.Gid} mtime={st.Mtime.Seconds}");
            if (st.Type == Native.S_IFREG) d.Append(" content=").Append(File.ReadAllText(path));
            if (st.Type == Native.S_IFLNK) d.Append(" -> ").Append(new FileInfo(path).LinkTarget);
            foreach (var (k, v) in Native.ListXattrs(path).Where(kv => !kv.Key.StartsWith("trusted.overlay.", StringComparison.Ordinal)))
                d.Append(' ').Append(k).Append('=').Append(Convert.ToHexString(v));
            result[rel] = d.ToString();
        }
        return result;
    }
}
