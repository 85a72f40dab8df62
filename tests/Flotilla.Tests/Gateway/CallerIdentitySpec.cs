using System.Net;
using Flotilla.Gateway.Forwarding;
using Xunit;

namespace Flotilla.Tests.Gateway;

/// <summary>
/// Who the audit trail names for a Docker API request: the direct caller, or the caller a gateway forwarded for, which
/// is believed only from an address a cluster process registered.
/// </summary>
public sealed class CallerIdentitySpec
{
    private static readonly string[] Registered = ["akka.tcp://flotilla@10.1.2.1:38111", "akka.tcp://flotilla@10.1.2.11:4053", "akka.tcp://flotilla@[fd00::5]:4053"];

    private static CallerIdentity Identity(Func<int>? onRead = null) => new(_ =>
    {
        onRead?.Invoke();
        return Task.FromResult<IEnumerable<string>>(Registered);
    });

    [Theory]
    // A gateway of the cluster forwarding for its client: the client is named.
    [InlineData("10.1.2.1", "gw", "anonymous@127.0.0.1", "anonymous@127.0.0.1")]
    [InlineData("10.1.2.11", "h1", "anonymous@192.168.1.9", "anonymous@192.168.1.9")]
    [InlineData("fd00::5", "h5", "anonymous@127.0.0.1", "anonymous@127.0.0.1")]
    [InlineData("::ffff:10.1.2.1", "gw", "anonymous@127.0.0.1", "anonymous@127.0.0.1")]
    // Anyone else claiming to forward is named by its own address.
    [InlineData("10.1.2.99", "gw", "admin", "anonymous@10.1.2.99")]
    [InlineData("192.168.1.9", "gw", "anonymous@127.0.0.1", "anonymous@192.168.1.9")]
    // Both headers are needed, and the name must be one the audit trail can store.
    [InlineData("10.1.2.1", null, "anonymous@127.0.0.1", "anonymous@10.1.2.1")]
    [InlineData("10.1.2.1", "", "anonymous@127.0.0.1", "anonymous@10.1.2.1")]
    [InlineData("10.1.2.1", "gw", null, "anonymous@10.1.2.1")]
    [InlineData("10.1.2.1", "gw", "", "anonymous@10.1.2.1")]
    [InlineData("10.1.2.1", "gw", "two words", "anonymous@10.1.2.1")]
    [InlineData("10.1.2.1", "gw", "a,b", "anonymous@10.1.2.1")]
    [InlineData("10.1.2.1", "gw", "line\nbreak", "anonymous@10.1.2.1")]
    [InlineData("10.1.2.1", "gw", "caf\u00e9", "anonymous@10.1.2.1")]
    public async Task Names_the_caller(string remote, string? forwardedBy, string? forwardedFor, string expected)
    {
        Assert.Equal(expected, await Identity().ResolveAsync(IPAddress.Parse(remote), forwardedBy, forwardedFor));
    }

    [Fact]
    public async Task A_unix_socket_caller_is_local_and_cannot_forward()
    {
        Assert.Equal("anonymous@local", await Identity().ResolveAsync(null, "gw", "anonymous@127.0.0.1"));
    }

    [Fact]
    public async Task An_overlong_forwarded_name_is_not_believed()
    {
        var name = "anonymous@" + new string('x', CallerIdentity.MaxUserLength);
        Assert.Equal("anonymous@10.1.2.1", await Identity().ResolveAsync(IPAddress.Parse("10.1.2.1"), "gw", name));
    }

    [Fact]
    public async Task The_cluster_addresses_are_read_once_for_a_burst_of_requests()
    {
        var reads = 0;
        var identity = Identity(() => Interlocked.Increment(ref reads));
        for (var i = 0; i < 50; i++)
            Assert.Equal("anonymous@127.0.0.1", await identity.ResolveAsync(IPAddress.Parse("10.1.2.11"), "h1", "anonymous@127.0.0.1"));
        // An unknown address right after a read does not cause another read either (at most one a second).
        Assert.Equal("anonymous@10.9.9.9", await identity.ResolveAsync(IPAddress.Parse("10.9.9.9"), "h1", "anonymous@127.0.0.1"));
        Assert.Equal(1, reads);
    }
}
