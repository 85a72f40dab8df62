using Flotilla.NodeRuntime.Images;
using Xunit;

namespace Flotilla.Tests.Images;

public sealed class ImageReferenceSpec
{
    private const string H = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    [Theory]
    // input, normalised, familiar, ParseDockerRef
    [InlineData("busybox", "docker.io/library/busybox", "busybox", "docker.io/library/busybox:latest")]
    [InlineData("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36", "docker.io/library/busybox:1.36")]
    [InlineData("library/busybox", "docker.io/library/busybox", "busybox", "docker.io/library/busybox:latest")]
    [InlineData("docker.io/busybox", "docker.io/library/busybox", "busybox", "docker.io/library/busybox:latest")]
    [InlineData("docker.io/library/busybox:musl", "docker.io/library/busybox:musl", "busybox:musl", "docker.io/library/busybox:musl")]
    [InlineData("index.docker.io/library/busybox", "docker.io/library/busybox", "busybox", "docker.io/library/busybox:latest")]
    [InlineData("index.docker.io/busybox", "docker.io/library/busybox", "busybox", "docker.io/library/busybox:latest")]
    [InlineData("user/repo", "docker.io/user/repo", "user/repo", "docker.io/user/repo:latest")]
    [InlineData("docker.io/user/repo:tag", "docker.io/user/repo:tag", "user/repo:tag", "docker.io/user/repo:tag")]
    [InlineData("library/a/b", "docker.io/library/a/b", "library/a/b", "docker.io/library/a/b:latest")]
    [InlineData("localhost/foo", "localhost/foo", "localhost/foo", "localhost/foo:latest")]
    [InlineData("localhost:5000/foo/bar:v1", "localhost:5000/foo/bar:v1", "localhost:5000/foo/bar:v1", "localhost:5000/foo/bar:v1")]
    [InlineData("foo.com:8080/bar", "foo.com:8080/bar", "foo.com:8080/bar", "foo.com:8080/bar:latest")]
    [InlineData("foo:5000", "docker.io/library/foo:5000", "foo:5000", "docker.io/library/foo:5000")]
    [InlineData("Foo/bar", "Foo/bar", "Foo/bar", "Foo/bar:latest")]
    [InlineData("[::1]:5000/foo", "[::1]:5000/foo", "[::1]:5000/foo", "[::1]:5000/foo:latest")]
    [InlineData("[2001:db8::1]/foo", "[2001:db8::1]/foo", "[2001:db8::1]/foo", "[2001:db8::1]/foo:latest")]
    [InlineData("gcr.io/project/image:v1.2.3-rc_4", "gcr.io/project/image:v1.2.3-rc_4", "gcr.io/project/image:v1.2.3-rc_4", "gcr.io/project/image:v1.2.3-rc_4")]
    [InlineData("a__b/c-d---e.f_g", "docker.io/a__b/c-d---e.f_g", "a__b/c-d---e.f_g", "docker.io/a__b/c-d---e.f_g:latest")]
    [InlineData("busybox:Latest_1", "docker.io/library/busybox:Latest_1", "busybox:Latest_1", "docker.io/library/busybox:Latest_1")]
    [InlineData("busybox@sha256:" + H, "docker.io/library/busybox@sha256:" + H, "busybox@sha256:" + H, "docker.io/library/busybox@sha256:" + H)]
    [InlineData("busybox:1@sha256:" + H, "docker.io/library/busybox:1@sha256:" + H, "busybox:1@sha256:" + H, "docker.io/library/busybox@sha256:" + H)]
    [InlineData("r.example.com/a/b/c/d:t@sha256:" + H, "r.example.com/a/b/c/d:t@sha256:" + H, "r.example.com/a/b/c/d:t@sha256:" + H, "r.example.com/a/b/c/d@sha256:" + H)]
    [InlineData("sub-domain.example-1.com/x", "sub-domain.example-1.com/x", "sub-domain.example-1.com/x", "sub-domain.example-1.com/x:latest")]
    public void Valid_references_normalise_like_docker(string input, string normalised, string familiar, string dockerRef)
    {
        var r = ImageReference.Parse(input);
        Assert.Equal(normalised, r.ToString());
        Assert.Equal(familiar, r.FamiliarString);
        Assert.Equal(dockerRef, ImageReference.ParseDockerRef(input).ToString());
        Assert.Equal(r, ImageReference.Parse(r.ToString())); // normalised form is a fixed point
    }

    [Fact]
    public void Parts_are_exposed()
    {
        var r = ImageReference.Parse("localhost:5000/team/app:v2@sha256:" + H);
        Assert.Equal(("localhost:5000", "team/app", "v2", "sha256:" + H), (r.Domain, r.Path, r.Tag, r.Digest));
        Assert.Equal("localhost:5000/team/app", r.Name);
        Assert.Equal("busybox", ImageReference.Parse("busybox:1").FamiliarName);
        Assert.Equal("docker.io/library/busybox:2", ImageReference.Parse("busybox:1").WithTag("2").ToString());
        Assert.Throws<InvalidReferenceException>(() => ImageReference.Parse("busybox").WithTag("-x"));
    }

    public static TheoryData<string, string> Invalid => new()
    {
        { "", "invalid reference format" },
        { "Busybox", "invalid reference format: repository name must be lowercase" },
        { "docker.io/Foo/bar", "invalid reference format: repository name must be lowercase" },
        { "localhost:5000/Foo", "invalid reference format: repository name must be lowercase" },
        { "user/Repo:tag", "invalid reference format: repository name must be lowercase" },
        { "busybox:", "invalid reference format" },
        { ":tag", "invalid reference format" },
        { "busybox:-tag", "invalid reference format" },
        { "busybox:.tag", "invalid reference format" },
        { "busybox:" + new string('t', 129), "invalid reference format" },
        { "busybox:tag:tag", "invalid reference format" },
        { "busybox latest", "invalid reference format" },
        { "a/../b", "invalid reference format" },
        { "foo_/bar", "invalid reference format" },
        { "foo//bar", "invalid reference format" },
        { "foo/", "invalid reference format" },
        { "/foo", "invalid reference format" },
        { "-foo", "invalid reference format" },
        { "foo-/bar.com", "invalid reference format" },
        { "foo-.com/bar", "invalid reference format" },
        { "localhost:port/x", "invalid reference format" },
        { "ünicode", "invalid reference format" },
        { "busybox@sha256:abc", "invalid reference format" },
        { "busybox@sha256:" + H[..63], "invalid checksum digest length" },
        { "busybox@md5:" + H[..32], "unsupported digest algorithm" },
        { "busybox@sha256:" + H.ToUpperInvariant(), "invalid checksum digest format" },
        { H, $"invalid repository name ({H}), cannot specify 64-byte hexadecimal strings" },
        { "a/" + new string('b', 260), "repository name must not be more than 255 characters" },
    };

    [Theory]
    [MemberData(nameof(Invalid))]
    public void Invalid_references_fail_with_dockers_message(string input, string message)
    {
        var ex = Assert.Throws<InvalidReferenceException>(() => ImageReference.Parse(input));
        Assert.Equal(message, ex.Message);
        Assert.False(ImageReference.TryParse(input, out _));
    }

    [Fact]
    public void A_tag_of_128_characters_is_the_longest_allowed()
    {
        var tag = "a" + new string('b', 127);
        Assert.Equal(tag, ImageReference.Parse("busybox:" + tag).Tag);
    }
}
