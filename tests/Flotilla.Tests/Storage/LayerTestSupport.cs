using System.Formats.Tar;
using System.IO.Compression;
using System.Text;

using Xunit;

namespace Flotilla.Tests.Storage;

/// <summary>A scratch directory with a target for unpacking and an empty sentinel sibling that must stay empty.</summary>
public sealed class LayerScratch : IDisposable
{
    public LayerScratch()
    {
        Root = Path.Combine(Path.GetTempPath(), "flt-layer-" + Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(Root);
        Sentinel = Path.Combine(Root, "sentinel");
        Directory.CreateDirectory(Sentinel);
        Target = Path.Combine(Root, "target");
    }

    public string Root { get; }
    public string Sentinel { get; }
    public string Target { get; }

    /// <summary>Nothing but the (empty) sentinel — and the target if it is expected — exists beside it.</summary>
    public void AssertNothingOutside(bool targetExpected)
    {
        Assert.Empty(Directory.EnumerateFileSystemEntries(Sentinel));
        var siblings = Directory.EnumerateFileSystemEntries(Root).Select(Path.GetFileName).Order().ToArray();
        Assert.Equal(targetExpected ? new[] { "sentinel", "target" } : ["sentinel"], siblings);
    }

    public void Dispose()
    {
        foreach (var line in File.ReadAllLines("/proc/self/mounts"))
        {
            var mnt = line.Split(' ')[1];
            if (mnt.StartsWith(Root, StringComparison.Ordinal)) Flotilla.Tests.Storage.Sys.Umount(mnt);
        }
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException) { }
    }
}

internal static class Sys
{
    [System.Runtime.InteropServices.DllImport("libc")]
    private static extern int umount2(string target, int flags);

    public static void Umount(string target) => umount2(target, 2);
}

/// <summary>Builds tar archives in memory.</summary>
public sealed class TarBuilder
{
    private readonly MemoryStream _ms = new();
    private readonly TarWriter _writer;

    public TarBuilder(TarEntryFormat format = TarEntryFormat.Pax)
    {
        Format = format;
        _writer = new TarWriter(_ms, format, leaveOpen: true);
    }

    public TarEntryFormat Format { get; }

    public static readonly DateTimeOffset Time = new(2024, 3, 1, 12, 0, 0, TimeSpan.Zero);

    private TarEntry Make(TarEntryType type, string name, Dictionary<string, string>? pax = null) => Format switch
    {
        TarEntryFormat.Pax => pax is null ? new PaxTarEntry(type, name) : new PaxTarEntry(type, name, pax),
        TarEntryFormat.Gnu => new GnuTarEntry(type, name),
        _ => new UstarTarEntry(type, name),
    };

    public TarBuilder Dir(string name, UnixFileMode mode = (UnixFileMode)0755, int uid = 0, int gid = 0)
    {
        var e = Make(TarEntryType.Directory, name);
        e.Mode = mode; e.Uid = uid; e.Gid = gid; e.ModificationTime = Time;
        _writer.WriteEntry(e);
        return this;
    }

    public TarBuilder File(string name, string content, UnixFileMode mode = (UnixFileMode)0644, int uid = 0, int gid = 0,
        Dictionary<string, string>? pax = null)
    {
        var e = Make(TarEntryType.RegularFile, name, pax);
        e.Mode = mode; e.Uid = uid; e.Gid = gid; e.ModificationTime = Time;
        e.DataStream = new MemoryStream(Encoding.UTF8.GetBytes(content));
        _writer.WriteEntry(e);
        return this;
    }

    public TarBuilder Symlink(string name, string target)
    {
        var e = Make(TarEntryType.SymbolicLink, name);
        e.LinkName = target; e.Mode = (UnixFileMode)0777; e.ModificationTime = Time;
        _writer.WriteEntry(e);
        return this;
    }

    public TarBuilder HardLink(string name, string target)
    {
        var e = Make(TarEntryType.HardLink, name);
        e.LinkName = target; e.Mode = (UnixFileMode)0644; e.ModificationTime = Time;
        _writer.WriteEntry(e);
        return this;
    }

    public TarBuilder Device(TarEntryType type, string name, int major, int minor)
    {
        var e = (PosixTarEntry)Make(type, name);
        if (type != TarEntryType.Fifo) { e.DeviceMajor = major; e.DeviceMinor = minor; }
        e.Mode = (UnixFileMode)0600; e.ModificationTime = Time;
        _writer.WriteEntry(e);
        return this;
    }

    public TarBuilder Entry(TarEntry e)
    {
        _writer.WriteEntry(e);
        return this;
    }

    public byte[] Bytes()
    {
        _writer.Dispose();
        return _ms.ToArray();
    }

    public static byte[] Gzip(byte[] tar)
    {
        var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true)) gz.Write(tar);
        return ms.ToArray();
    }

    public static byte[] Zstd(byte[] tar)
    {
        using var c = new ZstdSharp.Compressor(3);
        return c.Wrap(tar).ToArray();
    }

    /// <summary>Recomputes the checksum of the 512-byte header at <paramref name="offset"/> after byte surgery.</summary>
    public static void FixChecksum(byte[] tar, int offset)
    {
        var h = tar.AsSpan(offset, 512);
        h.Slice(148, 8).Fill((byte)' ');
        var sum = 0;
        foreach (var b in h) sum += b;
        Encoding.ASCII.GetBytes(Convert.ToString(sum, 8).PadLeft(6, '0') + "\0 ").CopyTo(h.Slice(148, 8));
    }

    /// <summary>A raw ustar header block (plus data) written by hand, for entries TarWriter refuses to make.</summary>
    public static byte[] RawHeader(string name, char type, long size, byte[]? data = null)
    {
        var h = new byte[512];
        Encoding.ASCII.GetBytes(name).CopyTo(h, 0);
        Encoding.ASCII.GetBytes("0000644\0").CopyTo(h, 100);
        Encoding.ASCII.GetBytes("0000000\0").CopyTo(h, 108);
        Encoding.ASCII.GetBytes("0000000\0").CopyTo(h, 116);
        Encoding.ASCII.GetBytes(Convert.ToString(size, 8).PadLeft(11, '0') + "\0").CopyTo(h, 124);
        Encoding.ASCII.GetBytes("14572431060\0").CopyTo(h, 136);
        h[156] = (byte)type;
        Encoding.ASCII.GetBytes("ustar\0" + "00").CopyTo(h, 257);
        FixChecksum(h, 0);
        data ??= [];
        var padded = new byte[512 + (data.Length + 511) / 512 * 512];
        h.CopyTo(padded, 0);
        data.CopyTo(padded, 512);
        return padded;
    }
}
