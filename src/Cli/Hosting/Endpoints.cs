using System.Net;

namespace Flotilla.Cli.Hosting;

public static class Endpoints
{
    /// <summary>Parses <c>host:port</c>, <c>:port</c> or <c>tcp://host:port</c>; the host must be an IP address or localhost.</summary>
    public static IPEndPoint Parse(string text, string flag)
    {
        var s = text.Trim();
        if (s.StartsWith("tcp://", StringComparison.OrdinalIgnoreCase)) s = s[6..];
        if (s.StartsWith("http://", StringComparison.OrdinalIgnoreCase)) s = s[7..];
        s = s.TrimEnd('/');
        var colon = s.LastIndexOf(':');
        if (colon < 0 || !int.TryParse(s[(colon + 1)..], out var port) || port is < 0 or > 65535)
            throw new ArgumentException($"{flag}: '{text}' is not HOST:PORT");
        var host = s[..colon].Trim('[', ']');
        if (host is "" or "localhost") host = host == "" ? "0.0.0.0" : "127.0.0.1";
        if (!IPAddress.TryParse(host, out var ip))
            throw new ArgumentException($"{flag}: '{host}' is not an IP address");
        return new IPEndPoint(ip, port);
    }
}
