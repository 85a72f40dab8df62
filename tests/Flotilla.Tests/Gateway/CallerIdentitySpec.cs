using System.Net;
using Flotilla.Cluster.Security;
using Flotilla.Gateway.Forwarding;
using Xunit;

namespace Flotilla.Tests.Gateway;

/// <summary>
/// Who the audit trail names for a Docker API request: the direct caller, or the caller a gateway forwarded for, which
/// is believed only from a connection authenticated with a gateway certificate of the cluster — never from an address
/// (on <c>flotilla up</c> every local process shares the cluster's loopback address).
/// </summary>
public sealed class CallerIdentitySpec
{
    private static readonly ClusterPeer Gateway = new(ClusterRole.Gateway, "gw", "CN=gw, OU=gateway, O=flotilla");
    private static readonly ClusterPeer Node = new(ClusterRole.Node, "h1", "CN=h1, OU=node, O=flotilla");

    private static ClusterPeer? Peer(string? role) => role switch { "gateway" => Gateway, "node" => Node, _ => null };

    [Theory]
    // A gateway of the cluster forwarding for its client: the client is named.
    [InlineData("10.1.2.1", "gateway", "gw", "anonymous@127.0.0.1", "anonymous@127.0.0.1")]
    [InlineData("::ffff:10.1.2.1", "gateway", "gw", "anonymous@192.168.1.9", "anonymous@192.168.1.9")]
    // Without a gateway certificate the header is ignored, whatever the address (a registered one included).
    [InlineData("127.0.0.1", null, "gw", "admin", "anonymous@127.0.0.1")]
    [InlineData("10.1.2.1", null, "gw", "anonymous@127.0.0.1", "anonymous@10.1.2.1")]
    [InlineData("10.1.2.11", "node", "h1", "admin", "anonymous@10.1.2.11")]
    // Both headers are needed, and the name must be one the audit trail can store.
    [InlineData("10.1.2.1", "gateway", null, "anonymous@127.0.0.1", "anonymous@10.1.2.1")]
    [InlineData("10.1.2.1", "gateway", "", "anonymous@127.0.0.1", "anonymous@10.1.2.1")]
    [InlineData("10.1.2.1", "gateway", "gw", null, "anonymous@10.1.2.1")]
    [InlineData("10.1.2.1", "gateway", "gw", "", "anonymous@10.1.2.1")]
    [InlineData("10.1.2.1", "gateway", "gw", "two words", "anonymous@10.1.2.1")]
    [InlineData("10.1.2.1", "gateway", "gw", "a,b", "anonymous@10.1.2.1")]
    [InlineData("10.1.2.1", "gateway", "gw", "line\nbreak", "anonymous@10.1.2.1")]
    [InlineData("10.1.2.1", "gateway", "gw", "caf\u00e9", "anonymous@10.1.2.1")]
    public void Names_the_caller(string remote, string? peer, string? forwardedBy, string? forwardedFor, string expected)
    {
        Assert.Equal(expected, new CallerIdentity().Resolve(IPAddress.Parse(remote), Peer(peer), forwardedBy, forwardedFor));
    }

    [Fact]
    public void A_unix_socket_caller_is_local_and_cannot_forward()
    {
        Assert.Equal("anonymous@local", new CallerIdentity().Resolve(null, null, "gw", "anonymous@127.0.0.1"));
    }

    [Fact]
    public void An_overlong_forwarded_name_is_not_believed()
    {
        var name = "anonymous@" + new string('x', CallerIdentity.MaxUserLength);
        Assert.Equal("anonymous@10.1.2.1", new CallerIdentity().Resolve(IPAddress.Parse("10.1.2.1"), Gateway, "gw", name));
    }
}
