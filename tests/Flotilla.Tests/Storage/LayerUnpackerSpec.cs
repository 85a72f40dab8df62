using System.Formats.Tar;
using System.Security.Cryptography;
using System.Text;
using Flotilla.NodeRuntime.Storage;

using Xunit;

namespace Flotilla.Tests.Storage;

public sealed class LayerUnpackerSpec
{
    private static byte[] SampleLayer() => new TarBuilder()
        .Dir("./")
        .Dir("bin/")
        .File("bin/tool", "#!/bin/sh\necho hi\n", (UnixFileMode)Convert.ToInt32("4755", 8), uid: 1000, gid: 50)
        .Dir("tmp/", (UnixFileMode)Convert.ToInt32("1777", 8))
        .Symlink("bin/sh", "/bin/busybox")
        .HardLink("bin/tool2", "bin/tool")
        .File("etc/xattr", "x", pax: new() { ["SCHILY.xattr.user.flotilla"] = "yes", ["SCHILY.xattr.trusted.overlay.redirect"] = "/evil" })
        .File("etc/.wh.gone", "")
        .Dir("var/")
        .File("var/.wh..wh..opq", "")
        .File("/abs/file", "absolute names land inside")
        .Device(TarEntryType.Fifo, "run/fifo", 0, 0)
        .Bytes();

    [Theory]
    [InlineData("plain")]
    [InlineData("gzip")]
    [InlineData("zstd")]
    public void Applies_a_layer_in_overlay_form_and_returns_the_diff_id_of_the_uncompressed_tar(string compression)
    {
        using var s = new LayerScratch();
        var tar = SampleLayer();
        var blob = compression switch { "gzip" => TarBuilder.Gzip(tar), "zstd" => TarBuilder.Zstd(tar), _ => tar };

        var result = LayerUnpacker.Unpack(new MemoryStream(blob), s.Target);

        Assert.Equal(Digest.Of(tar), result.DiffId);
        Assert.Equal(tar.Length, result.Size);
        Assert.Equal(compression switch { "gzip" => LayerCompression.Gzip, "zstd" => LayerCompression.Zstd, _ => LayerCompression.None }, result.Compression);
        var t = s.Target;
        var tool = Stat(Path.Combine(t, "bin/tool"));
        Assert.Equal(Convert.ToUInt32("4755", 8), tool.Permissions);
        Assert.Equal((1000u, 50u), (tool.Uid, tool.Gid));
        Assert.Equal(TarBuilder.Time.ToUnixTimeSeconds(), tool.Mtime.Seconds);
        Assert.Equal(2u, tool.Nlink);
        Assert.Equal(tool.Ino, Stat(Path.Combine(t, "bin/tool2")).Ino);
        Assert.Equal(Convert.ToUInt32("1777", 8), Stat(Path.Combine(t, "tmp")).Permissions);
        Assert.Equal(TarBuilder.Time.ToUnixTimeSeconds(), Stat(Path.Combine(t, "bin")).Mtime.Seconds);
        Assert.Equal("/bin/busybox", new FileInfo(Path.Combine(t, "bin/sh")).LinkTarget);
        var gone = Stat(Path.Combine(t, "etc/gone"));
        Assert.Equal(Native.S_IFCHR, gone.Type);
        Assert.Equal((0u, 0u), (gone.RdevMajor, gone.RdevMinor));
        Assert.False(File.Exists(Path.Combine(t, "etc/.wh.gone")));
        Assert.Equal("y"u8.ToArray(), Native.ListXattrs(Path.Combine(t, "var"))["trusted.overlay.opaque"]);
        Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(t, "var")));
        var x = Native.ListXattrs(Path.Combine(t, "etc/xattr"));
        Assert.Equal("yes"u8.ToArray(), x["user.flotilla"]);
        Assert.False(x.ContainsKey("trusted.overlay.redirect"));
        Assert.Equal("absolute names land inside", File.ReadAllText(Path.Combine(t, "abs/file")));
        Assert.Equal(Native.S_IFIFO, Stat(Path.Combine(t, "run/fifo")).Type);
        s.AssertNothingOutside(targetExpected: true);
    }

    [Fact]
    public void Binary_xattr_values_survive_byte_for_byte()
    {
        using var s = new LayerScratch();
        // A PAX record written by hand: TarWriter would re-encode a non-UTF-8 value.
        byte[] value = [0x01, 0x00, 0x00, 0x02, 0xff, 0xfe, 0x80];
        var key = "SCHILY.xattr.user.bin="u8.ToArray();
        var body = new List<byte>();
        var len = key.Length + value.Length + 2;
        var prefix = Encoding.ASCII.GetBytes($"{len + len.ToString().Length} ");
        body.AddRange(prefix); body.AddRange(key); body.AddRange(value); body.Add((byte)'\n');
        var tar = TarBuilder.RawHeader("PaxHeaders/f", 'x', body.Count, [.. body])
            .Concat(TarBuilder.RawHeader("f", '0', 2, "hi"u8.ToArray())).Concat(new byte[1024]).ToArray();

        LayerUnpacker.Unpack(new MemoryStream(tar), s.Target);

        Assert.Equal(value, Native.ListXattrs(Path.Combine(s.Target, "f"))["user.bin"]);
    }

    [Fact]
    public void A_regular_file_replaces_an_earlier_symlink_instead_of_writing_through_it()
    {
        using var s = new LayerScratch();
        var tar = new TarBuilder().Symlink("f", Path.Combine(s.Sentinel, "f")).File("f", "inside").Bytes();
        LayerUnpacker.Unpack(new MemoryStream(tar), s.Target);
        Assert.Equal("inside", File.ReadAllText(Path.Combine(s.Target, "f")));
        Assert.Null(new FileInfo(Path.Combine(s.Target, "f")).LinkTarget);
        s.AssertNothingOutside(targetExpected: true);
    }

    [Fact]
    public void A_directory_replaces_an_earlier_symlink_instead_of_following_it()
    {
        using var s = new LayerScratch();
        var tar = new TarBuilder().Symlink("d", s.Sentinel).Dir("d/").File("d/x", "inside").Bytes();
        LayerUnpacker.Unpack(new MemoryStream(tar), s.Target);
        Assert.Equal(Native.S_IFDIR, Stat(Path.Combine(s.Target, "d")).Type);
        Assert.Equal("inside", File.ReadAllText(Path.Combine(s.Target, "d/x")));
        s.AssertNothingOutside(targetExpected: true);
    }

    [Fact]
    public void Devices_are_created_when_allowed()
    {
        using var s = new LayerScratch();
        var tar = new TarBuilder().Device(TarEntryType.CharacterDevice, "dev/null", 1, 3).Bytes();
        LayerUnpacker.Unpack(new MemoryStream(tar), s.Target, new LayerUnpackOptions { AllowDevices = true });
        var st = Stat(Path.Combine(s.Target, "dev/null"));
        Assert.Equal((Native.S_IFCHR, 1u, 3u), (st.Type, st.RdevMajor, st.RdevMinor));
    }

    public static TheoryData<string> Hostile => [.. HostileLayers.Keys];

    private static readonly Dictionary<string, (Func<LayerScratch, byte[]> Build, Type Expected, LayerLimits? Limits)> HostileLayers = new()
    {
        ["dotdot"] = (_ => new TarBuilder().File("../escape", "x").Bytes(), typeof(UnsafeLayerException), null),
        ["dotdot-nested"] = (_ => new TarBuilder().File("a/b/../../../escape", "x").Bytes(), typeof(UnsafeLayerException), null),
        ["dotdot-after-abs"] = (_ => new TarBuilder().File("/../escape", "x").Bytes(), typeof(UnsafeLayerException), null),
        ["write-through-absolute-symlink"] = (s => new TarBuilder().Symlink("link", s.Sentinel).File("link/pwned", "x").Bytes(), typeof(UnsafeLayerException), null),
        ["write-through-relative-symlink"] = (_ => new TarBuilder().Symlink("link", "../sentinel").File("link/pwned", "x").Bytes(), typeof(UnsafeLayerException), null),
        ["symlinked-parent-deep"] = (s => new TarBuilder().Dir("a/").Symlink("a/b", s.Sentinel).File("a/b/c/d", "x").Bytes(), typeof(UnsafeLayerException), null),
        ["dir-through-symlink"] = (s => new TarBuilder().Symlink("d", s.Sentinel).Dir("d/sub/").Bytes(), typeof(UnsafeLayerException), null),
        ["whiteout-through-symlink"] = (s => new TarBuilder().Symlink("d", s.Sentinel).File("d/.wh.x", "").Bytes(), typeof(UnsafeLayerException), null),
        ["opaque-through-symlink"] = (s => new TarBuilder().Symlink("d", s.Sentinel).File("d/.wh..wh..opq", "").Bytes(), typeof(UnsafeLayerException), null),
        ["hardlink-outside"] = (s => new TarBuilder().HardLink("h", "../sentinel/x").Bytes(), typeof(UnsafeLayerException), null),
        ["hardlink-host-path"] = (_ => new TarBuilder().HardLink("h", "/etc/passwd").Bytes(), typeof(UnsafeLayerException), null),
        ["hardlink-missing"] = (_ => new TarBuilder().File("a", "x").HardLink("h", "b").Bytes(), typeof(UnsafeLayerException), null),
        ["hardlink-through-symlink"] = (s => new TarBuilder().Symlink("l", s.Sentinel).HardLink("h", "l/x").Bytes(), typeof(UnsafeLayerException), null),
        ["char-device"] = (_ => new TarBuilder().Device(TarEntryType.CharacterDevice, "dev/mem", 1, 1).Bytes(), typeof(UnsafeLayerException), null),
        ["block-device"] = (_ => new TarBuilder().Device(TarEntryType.BlockDevice, "dev/sda", 8, 0).Bytes(), typeof(UnsafeLayerException), null),
        ["long-name"] = (_ => new TarBuilder().File(string.Join('/', Enumerable.Repeat("abcdefgh", 600)), "x").Bytes(), typeof(UnsafeLayerException), null),
        ["long-component"] = (_ => new TarBuilder().File(new string('a', 300), "x").Bytes(), typeof(UnsafeLayerException), null),
        ["too-many-entries"] = (_ => new TarBuilder().File("a", "").File("b", "").File("c", "").File("d", "").Bytes(), typeof(InvalidDataException), new LayerLimits { MaxEntries = 3 }),
        ["oversized-pax-header"] = (_ => new TarBuilder().File("a", "x", pax: new() { ["comment"] = new string('z', 5000) }).Bytes(), typeof(InvalidDataException), new LayerLimits { MaxMetaHeaderBytes = 4096 }),
        ["huge-gnu-longname"] = (_ => TarBuilder.RawHeader("././@LongLink", 'L', 1L << 33), typeof(InvalidDataException), null),
        ["whiteout-of-dotdot"] = (_ => new TarBuilder().File("a/.wh...", "").Bytes(), typeof(UnsafeLayerException), null),
        ["huge-pax-size-field"] = (_ => TarBuilder.RawHeader("PaxHeaders/a", 'x', 1L << 33), typeof(InvalidDataException), null),
        ["truncated-data"] = (_ => new TarBuilder().File("a", new string('x', 5000)).Bytes()[..2000], typeof(InvalidDataException), null),
        ["truncated-header"] = (_ => new TarBuilder().File("a", "x").File("b", "y").Bytes()[..(1024 + 100)], typeof(InvalidDataException), null),
        ["truncated-gzip"] = (_ => TarBuilder.Gzip(new TarBuilder().File("a", new string('x', 50000)).Bytes())[..200], typeof(InvalidDataException), null),
        ["garbage"] = (_ => Enumerable.Range(0, 2048).Select(i => (byte)(i * 7 + 3)).ToArray(), typeof(InvalidDataException), null),
        ["bad-checksum"] = (_ => { var t = new TarBuilder(TarEntryFormat.Ustar).File("a", "x").Bytes(); t[0] = (byte)'b'; return t; }, typeof(InvalidDataException), null),
        ["symlink-with-data"] = (_ => TarBuilder.RawHeader("l", '2', 600, new byte[600]), typeof(InvalidDataException), null),
        ["unknown-type"] = (_ => TarBuilder.RawHeader("s", 'S', 0), typeof(InvalidDataException), null),
        ["xz"] = (_ => [0xfd, (byte)'7', (byte)'z', (byte)'X', (byte)'Z', 0, 1, 2], typeof(InvalidDataException), null),
    };

    [Theory]
    [MemberData(nameof(Hostile))]
    public void A_hostile_or_broken_layer_is_refused_and_leaves_nothing_behind(string name)
    {
        using var s = new LayerScratch();
        var (build, expected, limits) = HostileLayers[name];
        var blob = build(s);
        var options = new LayerUnpackOptions { Limits = limits ?? new LayerLimits() };

        var ex = Assert.ThrowsAny<Exception>(() => LayerUnpacker.Unpack(new MemoryStream(blob), s.Target, options));

        Assert.IsType(expected, ex);
        s.AssertNothingOutside(targetExpected: false);
    }

    [Fact]
    public void The_unsafe_exception_names_the_entry()
    {
        using var s = new LayerScratch();
        var tar = new TarBuilder().Symlink("link", s.Sentinel).File("link/pwned", "x").Bytes();
        var ex = Assert.Throws<UnsafeLayerException>(() => LayerUnpacker.Unpack(new MemoryStream(tar), s.Target));
        Assert.Equal("link/pwned", ex.Entry);
        Assert.Contains("link/pwned", ex.Message);
    }

    [Fact]
    public void A_non_empty_target_is_refused()
    {
        using var s = new LayerScratch();
        Directory.CreateDirectory(s.Target);
        File.WriteAllText(Path.Combine(s.Target, "keep"), "x");
        Assert.Throws<IOException>(() => LayerUnpacker.Unpack(new MemoryStream(new TarBuilder().File("a", "b").Bytes()), s.Target));
        Assert.True(File.Exists(Path.Combine(s.Target, "keep")));
    }

    [Fact]
    public void The_diff_id_covers_trailing_padding()
    {
        using var s = new LayerScratch();
        var tar = new TarBuilder().File("a", "b").Bytes().Concat(new byte[4096]).ToArray();
        var result = LayerUnpacker.Unpack(new MemoryStream(tar), s.Target);
        Assert.Equal(Digest.FromHash(SHA256.HashData(tar)), result.DiffId);
    }

    internal static Native.Statx Stat(string path)
    {
        Assert.Equal(0, Native.statx(Native.AT_FDCWD, path, Native.AT_SYMLINK_NOFOLLOW, Native.STATX_BASIC_STATS, out var st));
        return st;
    }
}
