using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Flotilla.NodeRuntime.Registry;

/// <summary>
/// <c>sync_file_range(SYNC_FILE_RANGE_WRITE)</c>: starts writing a range of a file back to disk without
/// waiting. Called as an upload streams in, it leaves little for the fsync at publish time to wait for.
/// </summary>
internal static partial class Writeback
{
    private const uint SyncFileRangeWrite = 2;

    public static void Start(SafeFileHandle file, long offset, long length)
    {
        if (!OperatingSystem.IsLinux()) return;
        // Advisory only: a failure here just means the final fsync does all the work.
        _ = sync_file_range(file.DangerousGetHandle().ToInt32(), offset, length, SyncFileRangeWrite);
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int sync_file_range(int fd, long offset, long nbytes, uint flags);
}
