using System.Net.Sockets;
using Flotilla.Contracts.Access;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Flotilla.Gateway.Listeners;

/// <summary>
/// What a connection is: which listener took it (dispatch is by listener, never by port number: two listeners may
/// share a port on different addresses) and, on the unix socket, which local user is at the other end.
/// </summary>
public static class ClientConnection
{
    private const string ListenerItem = "flotilla-listener";
    private const string PeerUserItem = "flotilla-peer-user";

    /// <summary>First connection middleware of a listener: tags each connection with the listener (and its peer's uid on a unix socket).</summary>
    public static void Tag(ListenOptions listen, ClientListener listener) =>
        listen.Use(next => connection =>
        {
            connection.Items[ListenerItem] = listener;
            if (listener == ClientListener.DockerSocket &&
                connection.Features.Get<IConnectionSocketFeature>()?.Socket is { } socket &&
                PeerCredentials.Of(socket) is { } peer)
                connection.Items[PeerUserItem] = peer.AuditUser;
            return next(connection);
        });

    public static ClientListener? ListenerOf(IDictionary<object, object?>? items) =>
        items is not null && items.TryGetValue(ListenerItem, out var value) && value is ClientListener listener ? listener : null;

    public static ClientListener? ListenerOf(HttpContext context) =>
        ListenerOf(context.Features.Get<IConnectionItemsFeature>()?.Items);

    /// <summary>The local user at the other end of a unix socket connection (<c>uid:1000(alice)</c>), or null.</summary>
    public static string? PeerUserOf(IDictionary<object, object?>? items) =>
        items is not null && items.TryGetValue(PeerUserItem, out var value) ? value as string : null;

    public static string? PeerUserOf(HttpContext context) => PeerUserOf(context.Features.Get<IConnectionItemsFeature>()?.Items);

    public static string? PeerUserOf(ConnectionContext connection) => PeerUserOf(connection.Items);
}

/// <summary>The process at the other end of a unix socket, as the kernel tells it (<c>SO_PEERCRED</c>).</summary>
public sealed record PeerCredentials(int Pid, uint Uid, uint Gid)
{
    // <sys/socket.h> on Linux: SOL_SOCKET = 1, SO_PEERCRED = 17; struct ucred { pid_t pid; uid_t uid; gid_t gid; }.
    private const int SolSocket = 1;
    private const int SoPeerCred = 17;

    public static PeerCredentials? Of(Socket socket)
    {
        if (!OperatingSystem.IsLinux() || socket.AddressFamily != AddressFamily.Unix) return null;
        Span<byte> ucred = stackalloc byte[12];
        try
        {
            if (socket.GetRawSocketOption(SolSocket, SoPeerCred, ucred) != ucred.Length) return null;
        }
        catch (SocketException)
        {
            return null;
        }
        return new PeerCredentials(BitConverter.ToInt32(ucred[..4]), BitConverter.ToUInt32(ucred[4..8]), BitConverter.ToUInt32(ucred[8..12]));
    }

    /// <summary>The audit user: <c>uid:1000(alice)</c> as <c>id</c> writes it, or <c>uid:1000</c> when the passwd file does not name it.</summary>
    public string AuditUser => UserName(Uid) is { } name ? $"uid:{Uid}({name})" : $"uid:{Uid}";

    private static string? UserName(uint uid)
    {
        try
        {
            foreach (var line in File.ReadLines("/etc/passwd"))
            {
                var fields = line.Split(':');
                if (fields.Length > 2 && uint.TryParse(fields[2], out var id) && id == uid &&
                    fields[0].Length > 0 && fields[0].All(c => c > ' ' && c < 0x7f && c is not (',' or ';' or '(' or ')')))
                    return fields[0];
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return null;
    }
}
