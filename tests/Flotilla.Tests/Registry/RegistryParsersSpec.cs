using Flotilla.Cli.Commands;
using Flotilla.Cluster.Registry;
using Flotilla.Contracts.Registry;
using Flotilla.Gateway.Registry;
using Xunit;

namespace Flotilla.Tests.Registry;

/// <summary>Table tests of everything the registry parses from untrusted input.</summary>
public class RegistryParsersSpec
{
    private const string D = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    [Theory]
    [InlineData("library/busybox/manifests/latest", RegistryRouteKind.Manifest, "library/busybox", "latest")]
    [InlineData("a/manifests/" + D, RegistryRouteKind.Manifest, "a", D)]
    [InlineData("a/b/c/blobs/" + D, RegistryRouteKind.Blob, "a/b/c", D)]
    [InlineData("x/blobs/uploads/", RegistryRouteKind.Upload, "x", null)]
    [InlineData("x/blobs/uploads", RegistryRouteKind.Upload, "x", null)]
    [InlineData("x/blobs/uploads/5c1e", RegistryRouteKind.Upload, "x", "5c1e")]
    [InlineData("x/tags/list", RegistryRouteKind.Tags, "x", null)]
    [InlineData("x/referrers/" + D, RegistryRouteKind.Referrers, "x", D)]
    // Route words inside names: the last marker with a one-segment remainder wins.
    [InlineData("manifests/blobs/manifests/v1", RegistryRouteKind.Manifest, "manifests/blobs", "v1")]
    [InlineData("a/blobs/uploads/b/manifests/v1", RegistryRouteKind.Manifest, "a/blobs/uploads/b", "v1")]
    [InlineData("a/manifests/b/blobs/" + D, RegistryRouteKind.Blob, "a/manifests/b", D)]
    public void Routes_are_recognised_by_their_suffix(string rest, RegistryRouteKind kind, string name, string? argument)
    {
        var route = RegistryRoute.Parse(rest);
        Assert.NotNull(route);
        Assert.Equal(new RegistryRoute(kind, name, argument), route);
    }

    [Theory]
    [InlineData("x")]
    [InlineData("x/manifests/")]
    [InlineData("x/manifests/a/b")]
    [InlineData("/manifests/latest")]
    [InlineData("x/tags")]
    public void Other_paths_are_no_route(string rest) => Assert.Null(RegistryRoute.Parse(rest));

    [Theory]
    [InlineData("busybox", true)]
    [InlineData("library/busybox", true)]
    [InlineData("a.b_c__d-e---f/g9", true)]
    [InlineData("Busybox", false)]
    [InlineData("../etc", false)]
    [InlineData("a/../b", false)]
    [InlineData("a/./b", false)]
    [InlineData("a//b", false)]
    [InlineData("/a", false)]
    [InlineData("a/", false)]
    [InlineData("a___b", false)]
    [InlineData("a%2fb", false)]
    [InlineData("a b", false)]
    [InlineData("-a", false)]
    [InlineData("", false)]
    public void Repository_names_follow_the_spec_grammar(string name, bool valid) => Assert.Equal(valid, RegistryNames.IsValidRepository(name));

    [Fact]
    public void Repository_names_are_limited_in_length()
    {
        Assert.True(RegistryNames.IsValidRepository(new string('a', 255)));
        Assert.False(RegistryNames.IsValidRepository(new string('a', 256)));
    }

    [Theory]
    [InlineData("latest", true)]
    [InlineData("v1.2.3-rc_1", true)]
    [InlineData("_x", true)]
    [InlineData(".x", false)]
    [InlineData("-x", false)]
    [InlineData("a/b", false)]
    [InlineData("", false)]
    public void Tags_follow_the_spec_grammar(string tag, bool valid) => Assert.Equal(valid, RegistryNames.IsValidTag(tag));

    [Fact]
    public void Tags_are_at_most_128_characters()
    {
        Assert.True(RegistryNames.IsValidTag(new string('a', 128)));
        Assert.False(RegistryNames.IsValidTag(new string('a', 129)));
    }

    [Theory]
    [InlineData("0-99", true, 0, 99)]
    [InlineData("100-100", true, 100, 100)]
    [InlineData("bytes=5-9", true, 5, 9)]
    [InlineData("bytes 5-9/20", true, 5, 9)]
    [InlineData("9-5", false, 0, 0)]
    [InlineData("-5", false, 0, 0)]
    [InlineData("5-", false, 0, 0)]
    [InlineData("a-b", false, 0, 0)]
    [InlineData("", false, 0, 0)]
    [InlineData("99999999999999999999-1", false, 0, 0)]
    public void Chunk_content_ranges(string header, bool ok, long start, long end)
    {
        Assert.Equal(ok, ByteRanges.TryParseChunk(header, out var s, out var e));
        if (ok) Assert.Equal((start, end), (s, e));
    }

    [Theory]
    [InlineData("bytes=0-9", true, true, 0, 10)]
    [InlineData("bytes=10-", true, true, 10, 90)]
    [InlineData("bytes=-10", true, true, 90, 10)]
    [InlineData("bytes=-1000", true, true, 0, 100)]
    [InlineData("bytes=50-1000", true, true, 50, 50)]
    [InlineData("bytes=100-", true, false, 0, 0)]
    [InlineData("bytes=-0", true, false, 0, 0)]
    [InlineData("bytes=0-1,5-6", false, true, 0, 0)]
    [InlineData("items=0-1", false, true, 0, 0)]
    [InlineData("bytes=5-1", false, true, 0, 0)]
    [InlineData("bytes=x-1", false, true, 0, 0)]
    [InlineData(null, false, true, 0, 0)]
    public void Request_ranges_on_a_100_byte_blob(string? header, bool honoured, bool satisfiable, long offset, long length)
    {
        Assert.Equal(honoured, ByteRanges.TryParseRequest(header, 100, out var o, out var l, out var sat));
        Assert.Equal(satisfiable, sat);
        if (honoured && satisfiable) Assert.Equal((offset, length), (o, l));
    }

    private static byte[] Json(string s) => System.Text.Encoding.UTF8.GetBytes(s);

    private static string Desc(string mediaType, string digest = D, long size = 0) =>
        $$"""{"mediaType":"{{mediaType}}","digest":"{{digest}}","size":{{size}}}""";

    [Fact]
    public void An_oci_manifest_yields_its_blobs_subject_artifact_type_and_annotations()
    {
        var other = "sha256:" + new string('1', 64);
        var body = $$"""
            {"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
             "config":{{Desc("application/vnd.example+json")}},
             "layers":[{{Desc("application/vnd.oci.image.layer.v1.tar", other)}},
                       {"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":"sha256:{{new string('2', 64)}}","size":1,"urls":["https://x"]}],
             "subject":{{Desc("application/vnd.oci.image.manifest.v1+json", other)}},
             "annotations":{"a":"b"} }
            """;
        var m = RegistryManifest.Parse(Json(body), "application/vnd.oci.image.manifest.v1+json");
        Assert.Equal(RegistryManifest.OciManifest, m.MediaType);
        Assert.Equal([D, other], m.References);
        Assert.Equal(other, m.Subject);
        Assert.Equal("application/vnd.example+json", m.ArtifactType);
        Assert.Equal("b", m.Annotations!["a"]);
        Assert.Empty(m.Children);
    }

    [Fact]
    public void An_index_yields_its_children_and_infers_its_media_type()
    {
        var body = $$"""{"schemaVersion":2,"manifests":[{{Desc("application/vnd.oci.image.manifest.v1+json")}}]}""";
        var m = RegistryManifest.Parse(Json(body), "application/vnd.oci.image.index.v1+json");
        Assert.Equal(RegistryManifest.OciIndex, m.MediaType);
        Assert.Equal([D], m.Children);
        Assert.Null(m.ArtifactType);
    }

    [Fact]
    public void A_docker_schema2_manifest_is_accepted()
    {
        var body = $$"""{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{Desc("application/vnd.docker.container.image.v1+json")}},"layers":[]}""";
        var m = RegistryManifest.Parse(Json(body), "application/vnd.docker.distribution.manifest.v2+json");
        Assert.Equal(RegistryManifest.DockerManifest, m.MediaType);
        Assert.Equal([D], m.References);
    }

    [Theory]
    [InlineData("not json", "application/vnd.oci.image.manifest.v1+json")]
    [InlineData("[]", "application/vnd.oci.image.manifest.v1+json")]
    [InlineData("""{"schemaVersion":1,"config":{}}""", "application/vnd.oci.image.manifest.v1+json")]
    [InlineData("""{"config":{}}""", "application/vnd.oci.image.manifest.v1+json")]
    [InlineData("""{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}""", null)]
    [InlineData("""{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}""", "application/vnd.oci.image.manifest.v1+json")]
    [InlineData("""{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v1+json"}""", null)]
    [InlineData("""{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"x","digest":"sha256:nothex","size":1},"layers":[]}""", null)]
    [InlineData("""{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"x","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":-1},"layers":[]}""", null)]
    [InlineData("""{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":{}}""", null)]
    [InlineData("""{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"annotations":{"a":1}}""", null)]
    public void Invalid_manifests_are_MANIFEST_INVALID(string body, string? contentType)
    {
        var ex = Assert.Throws<RegistryException>(() => RegistryManifest.Parse(Json(body), contentType));
        Assert.Equal(RegistryErrorCodes.ManifestInvalid, ex.Code);
    }

    [Theory]
    [InlineData("0", 0)]
    [InlineData("90", 90)]
    [InlineData("90s", 90)]
    [InlineData("30m", 1800)]
    [InlineData("1h", 3600)]
    [InlineData("1h30m", 5400)]
    [InlineData("2d", 172800)]
    [InlineData("1.5h", 5400)]
    public void Gc_min_age_durations(string text, int seconds)
    {
        Assert.True(RegistryCommand.TryParseDuration(text, out var d));
        Assert.Equal(TimeSpan.FromSeconds(seconds), d);
    }

    [Theory]
    [InlineData("")]
    [InlineData("h")]
    [InlineData("1y")]
    [InlineData("-1h")]
    [InlineData("1 h")]
    public void Gc_min_age_refuses_other_text(string text) => Assert.False(RegistryCommand.TryParseDuration(text, out _));
}
