using System.Net.Sockets;

namespace Flotilla.Gateway;

/// <summary>
/// The Docker API's unix socket file. Through a unix socket the docker CLI sees the detach keys (ctrl-p ctrl-q)
/// itself; over TCP its stdin copy wraps the CLI's escape error and it never detaches — a CLI quirk, dockerd's too.
/// </summary>
public static class DockerSocketFile
{
    /// <summary>
    /// Makes the path ready to listen on: creates the directory and removes a stale socket file. Returns false (and
    /// leaves it alone) when a live daemon already answers there, e.g. a real dockerd.
    /// </summary>
    public static bool Prepare(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        if (!File.Exists(path)) return true;
        using (var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            try
            {
                probe.Connect(new UnixDomainSocketEndPoint(path));
                Console.Error.WriteLine($"flotilla: {path} is in use by another daemon; the Docker API listens on TCP only");
                return false;
            }
            catch (SocketException)
            {
            }
        }
        File.Delete(path);
        return true;
    }
}
