using System.Net;
using Flotilla.Gateway.Forwarding;
using Xunit;

namespace Flotilla.Tests.Gateway;

public class HijackRelaySpec
{
    [Theory]
    [InlineData("127.0.0.1:2375", "127.0.0.1:2375")]
    [InlineData("[::1]:2375", "[::1]:2375")]
    [InlineData("node-a:2375", "node-a:2375")]
    [InlineData("node-a.example:1", "node-a.example:1")]
    public void Node_endpoints_parse_as_host_and_port(string endpoint, string expected)
    {
        var parsed = HijackRelay.ParseEndpoint(endpoint);
        var text = parsed switch
        {
            IPEndPoint ip => ip.ToString(),
            DnsEndPoint dns => $"{dns.Host}:{dns.Port}",
            _ => parsed.ToString(),
        };
        Assert.Equal(expected, text);
    }

    [Theory]
    [InlineData("")]
    [InlineData("node-a")]
    [InlineData("node-a:")]
    [InlineData(":2375")]
    [InlineData("node-a:port")]
    [InlineData("node-a:99999")]
    [InlineData("node-a:0")]
    [InlineData("::1")]
    [InlineData("[::1]")]
    [InlineData("bad host:2375")]
    public void Endpoints_without_a_host_and_port_are_refused(string endpoint) =>
        Assert.Throws<FormatException>(() => HijackRelay.ParseEndpoint(endpoint));
}
