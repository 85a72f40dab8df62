using Flotilla.Contracts.Registry;
using Xunit;

namespace Flotilla.Tests.Registry.Auth;

/// <summary>The one rule of a registry user's repository pattern: <c>*</c> matches any characters, <c>/</c> included.</summary>
public class RepositoryPatternSpec
{
    [Theory]
    [InlineData("*", "app", true)]
    [InlineData("*", "team/app", true)]
    [InlineData("*", "team/a/b", true)]
    [InlineData("team/*", "team/app", true)]
    [InlineData("team/*", "team/a/b", true)]
    [InlineData("team/*", "team", false)]
    [InlineData("team/*", "teamx/app", false)]
    [InlineData("team/*", "other/app", false)]
    [InlineData("team/*", "other/team/app", false)]
    [InlineData("team/app", "team/app", true)]
    [InlineData("team/app", "team/app2", false)]
    [InlineData("team/app", "team/ap", false)]
    [InlineData("*/app", "team/app", true)]
    [InlineData("*/app", "a/b/app", true)]
    [InlineData("*/app", "app", false)]
    [InlineData("*/app", "team/app/x", false)]
    [InlineData("team/*-web", "team/shop-web", true)]
    [InlineData("team/*-web", "team/shop-web-old", false)]
    [InlineData("team*", "team", true)]
    [InlineData("team*", "teamx/app", true)]
    [InlineData("a*b*c", "axxbyyc", true)]
    [InlineData("a*b*c", "axxcyyb", false)]
    [InlineData("**", "team/app", true)]
    public void A_pattern_matches_the_whole_name_and_star_crosses_slashes(string pattern, string repository, bool matches)
    {
        Assert.True(RepositoryPattern.IsValid(pattern));
        Assert.Equal(matches, RepositoryPattern.Matches(pattern, repository));
    }

    [Theory]
    [InlineData("")]
    [InlineData("/team")]
    [InlineData("team/")]
    [InlineData("team//app")]
    [InlineData("Team/*")]
    [InlineData("team/?")]
    [InlineData("team/[ab]")]
    [InlineData("team app")]
    public void Other_shapes_are_refused(string pattern) => Assert.False(RepositoryPattern.IsValid(pattern));

    [Fact]
    public void Null_patterns_are_every_repository_and_only_all_star_patterns_cover_every_one()
    {
        Assert.True(RepositoryPattern.AnyMatches(null, "x/y"));
        Assert.True(RepositoryPattern.CoversEvery(null));
        Assert.True(RepositoryPattern.CoversEvery(["team/*", "*"]));
        Assert.False(RepositoryPattern.CoversEvery(["team/*", "*/app"]));
        Assert.False(RepositoryPattern.AnyMatches(["team/*", "*/app"], "other/web"));
        Assert.False(RepositoryPattern.IsValid(new string('a', RepositoryPattern.MaxLength + 1)));
    }
}
