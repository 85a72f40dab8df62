using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace Flotilla.NodeRuntime.Oci;

/// <summary>A host device node as <c>--device</c> needs it: char or block, numbers, permission bits, owner.</summary>
public sealed record DeviceNode(char Type, uint Major, uint Minor, uint FileMode, uint Uid, uint Gid)
{
    /// <summary>
    /// Reads <paramref name="path"/> on this host (symlinks followed, as dockerd does); throws
    /// <see cref="ArgumentException"/> with dockerd's wording when it is missing or not a device node.
    /// </summary>
    public static DeviceNode Of(string path)
    {
        var buffer = new byte[256];
        if (DeviceNative.statx(-100 /* AT_FDCWD */, path, 0, 0x7ff /* STATX_BASIC_STATS */, buffer) != 0)
            throw new ArgumentException(
                $"error gathering device information while adding custom device \"{path}\": {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        // struct statx: stx_uid @20, stx_gid @24, stx_mode @28 (u16), stx_rdev_major @128, stx_rdev_minor @132.
        var mode = BinaryPrimitives.ReadUInt16LittleEndian(buffer.AsSpan(28));
        var type = (mode & 0xF000) switch { 0x2000 => 'c', 0x6000 => 'b', _ => '\0' };
        if (type == '\0')
            throw new ArgumentException($"error gathering device information while adding custom device \"{path}\": not a device node");
        return new DeviceNode(type, BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(128)), BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(132)),
            (uint)(mode & 0x1FF), BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(20)), BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(24)));
    }
}

internal static partial class DeviceNative
{
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int statx(int dirfd, string path, int flags, uint mask, byte[] buffer);
}
