using Flotilla.Gateway.Hijack;
using Xunit;

namespace Flotilla.Tests.Gateway;

public class DetachKeysSpec
{
    [Theory]
    [InlineData(null, new byte[] { 0x10, 0x11 })]
    [InlineData("ctrl-p,ctrl-q", new byte[] { 0x10, 0x11 })]
    [InlineData("ctrl-a,x", new byte[] { 0x01, (byte)'x' })]
    [InlineData("ctrl-@", new byte[] { 0x00 })]
    public void Parses_dockers_syntax(string? text, byte[] expected) => Assert.Equal(expected, DetachKeys.Parse(text));

    [Theory]
    [InlineData("ctrl-")]
    [InlineData("ctrl-1")]
    [InlineData("shift-a")]
    public void Refuses_what_docker_refuses(string text) => Assert.Null(DetachKeys.Parse(text));

    [Fact]
    public void Detects_the_sequence_and_forwards_what_came_before()
    {
        var keys = new DetachKeys(DetachKeys.Default);
        var (forward, detach) = keys.Feed([(byte)'l', (byte)'s', 0x10, 0x11, (byte)'x']);
        Assert.True(detach);
        Assert.Equal("ls"u8.ToArray(), forward);
    }

    [Fact]
    public void A_sequence_split_across_reads_is_detected_and_a_broken_one_is_passed_on()
    {
        var keys = new DetachKeys(DetachKeys.Default);
        var first = keys.Feed([(byte)'a', 0x10]);
        Assert.Equal("a"u8.ToArray(), first.Forward);
        Assert.False(first.Detach);
        Assert.True(keys.Feed([0x11]).Detach);

        var other = new DetachKeys(DetachKeys.Default);
        var (forward, detach) = other.Feed([0x10, (byte)'b']);
        Assert.False(detach);
        Assert.Equal(new byte[] { 0x10, (byte)'b' }, forward);
    }
}
