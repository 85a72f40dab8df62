using Flotilla.Gateway.Registry;
using Flotilla.Gateway.Registry.Auth;
using Xunit;

namespace Flotilla.Tests.Registry.Auth;

public class RegistryScopeSpec
{
    [Theory]
    [InlineData("repository:foo/bar:pull,push", "repository", "foo/bar", "pull,push")]
    [InlineData("repository:samalba/my-app:pull", "repository", "samalba/my-app", "pull")]
    [InlineData("repository:localhost:5000/foo:pull", "repository", "localhost:5000/foo", "pull")]
    [InlineData("registry:catalog:*", "registry", "catalog", "*")]
    [InlineData("repository:a:pull,pull, push", "repository", "a", "pull,push")]
    public void Parses_the_token_spec_grammar(string text, string type, string name, string actions)
    {
        Assert.True(RegistryScope.TryParse(text, out var scope));
        Assert.Equal(type, scope.Type);
        Assert.Equal(name, scope.Name);
        Assert.Equal(actions, string.Join(",", scope.Actions));
    }

    [Theory]
    [InlineData("")]
    [InlineData("repository")]
    [InlineData("repository:foo")]
    [InlineData("repository:foo:")]
    [InlineData(":foo:pull")]
    [InlineData("repository::pull")]
    [InlineData("repository:a:b:c:pull")]
    [InlineData("Repository:foo:pull")]
    [InlineData("repository:foo:,")]
    public void Refuses_malformed_scopes(string text) => Assert.False(RegistryScope.TryParse(text, out _));

    [Fact]
    public void Formats_back_to_the_same_text() =>
        Assert.Equal("repository:localhost:5000/foo:pull,push",
            new RegistryScope("repository", "localhost:5000/foo", ["pull", "push"]).ToString());

    [Theory]
    [InlineData("GET", "/v2/", null)]
    [InlineData("GET", "/v2", null)]
    [InlineData("GET", "/v2/_catalog", "registry:catalog:*")]
    [InlineData("GET", "/v1/search", "registry:catalog:*")]
    [InlineData("GET", "/v2/a/b/manifests/latest", "repository:a/b:pull")]
    [InlineData("HEAD", "/v2/a/blobs/sha256:abc", "repository:a:pull")]
    [InlineData("PUT", "/v2/a/manifests/v1", "repository:a:push")]
    [InlineData("DELETE", "/v2/a/manifests/v1", "repository:a:delete")]
    [InlineData("DELETE", "/v2/a/blobs/sha256:abc", "repository:a:delete")]
    [InlineData("POST", "/v2/a/b/c/blobs/uploads/", "repository:a/b/c:push")]
    [InlineData("PATCH", "/v2/a/blobs/uploads/1234", "repository:a:push")]
    [InlineData("GET", "/v2/a/blobs/uploads/1234", "repository:a:push")]
    [InlineData("DELETE", "/v2/a/blobs/uploads/1234", "repository:a:push")]
    [InlineData("GET", "/v2/a/tags/list", "repository:a:pull")]
    [InlineData("GET", "/v2/a/referrers/sha256:abc", "repository:a:pull")]
    // A repository whose name holds a route word still resolves to the rightmost valid split.
    [InlineData("GET", "/v2/x/blobs/y/manifests/latest", "repository:x/blobs/y:pull")]
    [InlineData("GET", "/v2/x/manifests/blobs/sha256:abc", "repository:x/manifests:pull")]
    public void Maps_each_route_to_the_scope_it_needs(string method, string path, string? scope)
    {
        var need = RegistryRequest.Parse(method, path).Request!.Access;
        Assert.False(need.Anonymous);
        Assert.Equal(scope, need.Scope?.ToString());
    }

    [Theory]
    [InlineData("/token")]
    [InlineData("/v1/_ping")]
    public void The_realm_and_the_v1_ping_are_open(string path) => Assert.True(RegistryRequest.Parse("GET", path).Request!.Access.Anonymous);

    [Theory]
    [InlineData("GET", "/v2/a/manifests/sha256%3Aabc", "repository:a:pull")]
    [InlineData("POST", "/v2/a/blobs/uploads/?mount=sha256:abc&from=b", "repository:a:push")]
    public void An_escaped_colon_and_a_query_are_understood(string method, string target, string scope) =>
        Assert.Equal(scope, RegistryRequest.Parse(method, target).Request!.Access.Scope?.ToString());

    [Theory]
    [InlineData("POST", "/V2/a/blobs/uploads/", "UNSUPPORTED")]
    [InlineData("POST", "/v2/A/blobs/uploads/", "NAME_INVALID")]
    [InlineData("POST", "/v2/a%2Fb/blobs/uploads/", "NAME_INVALID")]
    [InlineData("GET", "/%76%32/a/tags/list", "NAME_INVALID")]
    [InlineData("GET", "/v2/../a/tags/list", "NAME_INVALID")]
    [InlineData("GET", "/v2//a/tags/list", "NAME_INVALID")]
    [InlineData("GET", "/v2/a/tags/list/", "NAME_UNKNOWN")]
    [InlineData("GET", "/v2/a/manifests/latest/", "NAME_UNKNOWN")]
    [InlineData("POST", "/v2/a/manifests/latest", "UNSUPPORTED")]
    [InlineData("PUT", "/v2/", "UNSUPPORTED")]
    [InlineData("DELETE", "/v2/_catalog", "UNSUPPORTED")]
    [InlineData("GET", "/TOKEN", "UNSUPPORTED")]
    [InlineData("GET", "http://evil/v2/", "NAME_INVALID")]
    public void Refuses_what_does_not_parse_exactly(string method, string target, string code)
    {
        var parse = RegistryRequest.Parse(method, target);
        Assert.Null(parse.Request);
        Assert.Equal(code, parse.Refusal!.Code);
    }
}
