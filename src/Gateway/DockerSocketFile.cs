using System.Net.Sockets;

namespace Flotilla.Gateway;

/// <summary>
/// The Docker API's unix socket file. Through a unix socket the docker CLI sees the detach keys (ctrl-p ctrl-q)
/// itself; over TCP its stdin copy wraps the CLI's escape error and it never detaches — a CLI quirk, dockerd's too.
/// Access is as dockerd's: mode 0660, owned by root and group <c>docker</c> when that group exists.
/// </summary>
public static class DockerSocketFile
{
    public const string DockerGroup = "docker";

    /// <summary>
    /// Makes the path ready to listen on: creates the directory and removes a stale socket file. Returns false (and
    /// leaves it alone) when a live daemon already answers there, e.g. a real dockerd. Anything at the path that is
    /// not a socket is refused (never deleted).
    /// </summary>
    /// <exception cref="ArgumentException">The path holds something that is not a socket.</exception>
    public static bool Prepare(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var existing = new FileInfo(path);
        if (!existing.Exists && !Directory.Exists(path) && existing.LinkTarget is null) return true;
        if (existing.LinkTarget is not null || Directory.Exists(path) || !IsSocket(path))
            throw new ArgumentException($"--docker-socket: {path} exists and is not a socket; refusing to replace it (move it away or choose another path)");
        using (var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            try
            {
                probe.Connect(new UnixDomainSocketEndPoint(path));
                Console.Error.WriteLine($"flotilla: {path} is in use by another daemon; the Docker API is not served on it");
                return false;
            }
            catch (SocketException)
            {
            }
        }
        File.Delete(path);
        return true;
    }

    /// <summary>After the listener made the socket: mode 0660, group <c>docker</c> when it exists (else the process's group).</summary>
    public static void Restrict(string path)
    {
        if (!OperatingSystem.IsLinux()) return;
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite);
        if (GroupId(DockerGroup) is { } gid && Chown(path, -1, gid) != 0)
            Console.Error.WriteLine($"flotilla: could not give {path} to group {DockerGroup} (errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()})");
    }

    /// <summary>The id of a group in /etc/group, or null.</summary>
    public static int? GroupId(string name)
    {
        try
        {
            foreach (var line in File.ReadLines("/etc/group"))
            {
                var fields = line.Split(':');
                if (fields.Length > 2 && fields[0] == name && int.TryParse(fields[2], out var gid)) return gid;
            }
        }
        catch (IOException)
        {
        }
        return null;
    }

    /// <summary>lstat's file type is a socket. .NET names no socket type, so it asks statx (whose layout is the same on every architecture).</summary>
    private static bool IsSocket(string path)
    {
        const int atFdCwd = -100, atSymlinkNoFollow = 0x100, statxType = 0x1, modeOffset = 28;
        const ushort typeMask = 0xF000, socketType = 0xC000;
        var buffer = new byte[256];
        if (Statx(atFdCwd, path, atSymlinkNoFollow, statxType, buffer) != 0) return false;
        return (BitConverter.ToUInt16(buffer, modeOffset) & typeMask) == socketType;
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true, EntryPoint = "statx")]
    private static extern int Statx(int dirfd, string path, int flags, uint mask, byte[] buffer);

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true, EntryPoint = "chown")]
    private static extern int Chown(string path, int owner, int group);
}
