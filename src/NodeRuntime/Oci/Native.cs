using System.Runtime.InteropServices;

namespace Flotilla.NodeRuntime.Oci;

/// <summary>The few libc calls .NET has no API for: raw pipes to hand to a child by number, O_PATH directories.</summary>
internal static partial class Native
{
    public const int O_CLOEXEC = 0x80000;
    public const int O_DIRECTORY = 0x10000;
    public const int O_PATH = 0x200000;
    private const int F_GETFD = 1;
    private const int F_SETFD = 2;
    private const int FD_CLOEXEC = 1;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int pipe2(Span<int> fds, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int close(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fcntl(int fd, int cmd, int arg);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open_(string path, int flags, int mode);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial nint read(int fd, byte* buf, nint count);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial nint write(int fd, byte* buf, nint count);

    /// <summary>A pipe whose both ends are close-on-exec: (read end, write end).</summary>
    public static (int Read, int Write) Pipe()
    {
        Span<int> fds = stackalloc int[2];
        if (pipe2(fds, O_CLOEXEC) != 0) throw Error("pipe2");
        return (fds[0], fds[1]);
    }

    public static void SetInheritable(int fd, bool inheritable)
    {
        var flags = fcntl(fd, F_GETFD, 0);
        if (flags < 0) throw Error("fcntl");
        flags = inheritable ? flags & ~FD_CLOEXEC : flags | FD_CLOEXEC;
        if (fcntl(fd, F_SETFD, flags) < 0) throw Error("fcntl");
    }

    /// <summary>
    /// Marks every open descriptor above stderr close-on-exec except <paramref name="keep"/>. .NET cannot close
    /// descriptors between fork and exec, so without this a long-lived child (conmon) would hold whatever the
    /// engine inherited or opened without O_CLOEXEC (seen: a pipe of the test host).
    /// </summary>
    public static void MarkCloseOnExec(params int[] keep)
    {
        foreach (var entry in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            if (!int.TryParse(Path.GetFileName(entry), out var fd) || fd <= 2 || keep.Contains(fd)) continue;
            var flags = fcntl(fd, F_GETFD, 0);
            if (flags >= 0 && (flags & FD_CLOEXEC) == 0) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
        }
    }

    public static int OpenPath(string directory)
    {
        var fd = open_(directory, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
        return fd < 0 ? throw Error($"open {directory}") : fd;
    }

    /// <summary>Blocking read; 0 at end of file.</summary>
    public static unsafe int Read(int fd, Span<byte> buffer)
    {
        while (true)
        {
            nint n;
            fixed (byte* p = buffer) n = read(fd, p, buffer.Length);
            if (n >= 0) return (int)n;
            if (Marshal.GetLastPInvokeError() != 4) throw Error("read"); // EINTR
        }
    }

    public static unsafe void WriteAll(int fd, ReadOnlySpan<byte> data)
    {
        while (data.Length > 0)
        {
            nint n;
            fixed (byte* p = data) n = write(fd, p, data.Length);
            if (n < 0)
            {
                if (Marshal.GetLastPInvokeError() == 4) continue;
                throw Error("write");
            }
            data = data[(int)n..];
        }
    }

    public static void Close(int fd)
    {
        if (fd >= 0) close(fd);
    }

    private static IOException Error(string what) =>
        new($"{what}: {Marshal.GetLastPInvokeErrorMessage()}", Marshal.GetLastPInvokeError());
}
