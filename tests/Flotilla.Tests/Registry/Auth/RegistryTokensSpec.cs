using System.Security.Cryptography;
using Flotilla.Gateway.Registry.Auth;
using Xunit;

namespace Flotilla.Tests.Registry.Auth;

public class RegistryTokensSpec
{
    private static readonly byte[] Key = RandomNumberGenerator.GetBytes(32);
    private readonly RegistryTokens _tokens = new(Key, "flotilla-registry", TimeSpan.FromMinutes(5));

    [Fact]
    public async Task A_token_carries_its_subject_and_access()
    {
        var token = _tokens.Issue("alice", [new RegistryScope("repository", "team/app", ["pull", "push"])], DateTimeOffset.UtcNow);

        var granted = await _tokens.ValidateAsync(token);

        Assert.NotNull(granted);
        Assert.Equal("alice", granted.Subject);
        Assert.True(granted.Allows(new RegistryScope("repository", "team/app", ["push"])));
        Assert.True(granted.Allows(new RegistryScope("repository", "team/app", ["pull", "push"])));
        Assert.False(granted.Allows(new RegistryScope("repository", "team/app", ["delete"])));
        Assert.False(granted.Allows(new RegistryScope("repository", "team/other", ["pull"])));
    }

    [Fact]
    public async Task An_expired_token_is_refused()
    {
        var token = _tokens.Issue("alice", [], DateTimeOffset.UtcNow - TimeSpan.FromMinutes(10));
        Assert.Null(await _tokens.ValidateAsync(token));
    }

    [Fact]
    public async Task A_token_signed_with_another_key_or_for_another_service_is_refused()
    {
        var other = new RegistryTokens(RandomNumberGenerator.GetBytes(32), "flotilla-registry", TimeSpan.FromMinutes(5));
        var elsewhere = new RegistryTokens(Key, "another-service", TimeSpan.FromMinutes(5));
        Assert.Null(await _tokens.ValidateAsync(other.Issue("alice", [], DateTimeOffset.UtcNow)));
        Assert.Null(await _tokens.ValidateAsync(elsewhere.Issue("alice", [], DateTimeOffset.UtcNow)));
    }

    [Fact]
    public async Task A_tampered_token_is_refused()
    {
        var token = _tokens.Issue("bob", [new RegistryScope("repository", "a", ["pull"])], DateTimeOffset.UtcNow);
        var parts = token.Split('.');
        var forged = _tokens.Issue("bob", [new RegistryScope("repository", "a", ["pull", "push", "delete"])], DateTimeOffset.UtcNow).Split('.');
        Assert.Null(await _tokens.ValidateAsync($"{parts[0]}.{forged[1]}.{parts[2]}"));
        Assert.Null(await _tokens.ValidateAsync("not-a-token"));
        Assert.Null(await _tokens.ValidateAsync(""));
    }
}
