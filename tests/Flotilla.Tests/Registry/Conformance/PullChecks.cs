using Xunit;
using Xunit.Abstractions;

namespace Flotilla.Tests.Registry.Conformance;

/// <summary>The suite's "Pull" workflow: blobs and manifests read back by digest and by tag, plus the error body.</summary>
public abstract class PullChecks<TRegistry>(TRegistry registry, ITestOutputHelper output)
    : ConformanceChecks<TRegistry>(registry, output) where TRegistry : RegistryUnderTest
{
    private const string Tag = "tagtest0";

    // Same reference as the suite: not a valid tag, so a registry may say 404 either way.
    private const string UnknownReference = ".INVALID_MANIFEST_NAME";

    /// <summary>Two configs, one layer, manifest 0 pushed by tag and manifest 1 by digest, once per registry.</summary>
    private sealed record PullContent(string Repository, Content Config0, Content Layer, Content Manifest0, Content Manifest1);

    private Task<PullContent> ContentAsync() => Registry.OnceAsync("pull", async () =>
    {
        var repository = Registry.NewRepository("pull");
        var config0 = TestContent.Config();
        var config1 = TestContent.Config();
        var layer = TestContent.RandomBlob(200);
        foreach (var blob in new[] { config0, config1, layer }) await PushBlobAsync(repository, blob);
        var manifest0 = TestContent.ImageManifest(config0, [layer]);
        var manifest1 = TestContent.ImageManifest(config1, [layer]);
        await PushManifestAsync(repository, Tag, manifest0);
        await PushManifestAsync(repository, manifest1.Digest, manifest1);
        return new PullContent(repository, config0, layer, manifest0, manifest1);
    });

    [Fact]
    public Task Blob_HEAD_of_an_unknown_digest_is_404() => Check(async () =>
    {
        var content = await ContentAsync();
        Expect.Status(await HeadAsync($"/v2/{content.Repository}/blobs/{TestContent.UnknownDigest}"), 404);
    });

    [Fact]
    public Task Blob_HEAD_is_200_with_length_and_digest() => Check(async () =>
    {
        var content = await ContentAsync();
        var head = await HeadAsync($"/v2/{content.Repository}/blobs/{content.Config0.Digest}");
        Expect.Status(head, 200);
        Expect.HeaderIfPresent(head, "Docker-Content-Digest", content.Config0.Digest);
        // The Docker daemon's blob Stat fails on a 2xx HEAD without Content-Length.
        Expect.HeaderEquals(head, "Content-Length", content.Config0.Size.ToString());
        Assert.Empty(head.Body);
    });

    [Fact]
    public Task Blob_GET_of_an_unknown_digest_is_404_BLOB_UNKNOWN() => Check(async () =>
    {
        var content = await ContentAsync();
        var get = await GetAsync($"/v2/{content.Repository}/blobs/{TestContent.UnknownDigest}");
        Expect.Status(get, 404);
        Expect.ErrorCode(get, "BLOB_UNKNOWN");
    });

    [Fact]
    public Task Blob_GET_is_200_with_the_exact_bytes() => Check(async () =>
    {
        var content = await ContentAsync();
        foreach (var blob in new[] { content.Config0, content.Layer })
        {
            var get = await GetAsync($"/v2/{content.Repository}/blobs/{blob.Digest}");
            Expect.Status(get, 200);
            Expect.Body(get, blob);
            Expect.HeaderIfPresent(get, "Docker-Content-Digest", blob.Digest);
        }
    });

    [Fact]
    public Task Manifest_HEAD_of_an_unknown_reference_is_404() => Check(async () =>
    {
        var content = await ContentAsync();
        Expect.Status(await HeadAsync($"/v2/{content.Repository}/manifests/{UnknownReference}"), 404);
    });

    [Fact]
    public Task Manifest_HEAD_by_digest_is_200() => Check(async () =>
    {
        var content = await ContentAsync();
        foreach (var manifest in new[] { content.Manifest0, content.Manifest1 })
        {
            var head = await Wire.SendAsync(HttpMethod.Head, $"/v2/{content.Repository}/manifests/{manifest.Digest}", headers: AcceptOci);
            Expect.Status(head, 200);
            Expect.HeaderIfPresent(head, "Docker-Content-Digest", manifest.Digest);
            Expect.HeaderEquals(head, "Content-Length", manifest.Size.ToString());
        }
    });

    [Fact]
    public Task Manifest_HEAD_by_tag_is_200() => Check(async () =>
    {
        var content = await ContentAsync();
        var head = await Wire.SendAsync(HttpMethod.Head, $"/v2/{content.Repository}/manifests/{Tag}", headers: AcceptOci);
        Expect.Status(head, 200);
        Expect.HeaderIfPresent(head, "Docker-Content-Digest", content.Manifest0.Digest);
    });

    [Fact]
    public Task Manifest_GET_of_an_unknown_reference_is_404() => Check(async () =>
    {
        var content = await ContentAsync();
        Expect.Status(await GetAsync($"/v2/{content.Repository}/manifests/{UnknownReference}"), 404);
        var byDigest = await GetAsync($"/v2/{content.Repository}/manifests/{TestContent.UnknownDigest}", AcceptOci);
        Expect.Status(byDigest, 404);
        Expect.ErrorCode(byDigest, "MANIFEST_UNKNOWN");
    });

    [Fact]
    public Task Manifest_GET_by_digest_returns_the_exact_bytes() => Check(async () =>
    {
        var content = await ContentAsync();
        foreach (var manifest in new[] { content.Manifest0, content.Manifest1 })
        {
            var get = await GetAsync($"/v2/{content.Repository}/manifests/{manifest.Digest}", AcceptOci);
            Expect.Status(get, 200);
            Expect.Body(get, manifest);
            Expect.HeaderEquals(get, "Content-Type", TestContent.OciManifest);
            Expect.HeaderIfPresent(get, "Docker-Content-Digest", manifest.Digest);
        }
    });

    [Fact]
    public Task Manifest_GET_by_tag_returns_the_exact_bytes() => Check(async () =>
    {
        var content = await ContentAsync();
        var get = await GetAsync($"/v2/{content.Repository}/manifests/{Tag}", AcceptOci);
        Expect.Status(get, 200);
        Expect.Body(get, content.Manifest0);
        Expect.HeaderIfPresent(get, "Docker-Content-Digest", content.Manifest0.Digest);
    });

    /// <summary>The suite's "400 response body should contain OCI-conforming JSON message".</summary>
    [Fact]
    public Task Error_body_for_a_malformed_digest_is_OCI_JSON() => Check(async () =>
    {
        var content = await ContentAsync();
        var get = await Wire.SendAsync(HttpMethod.Get, $"/v2/{content.Repository}/manifests/sha256:totallywrong",
            "blablabla"u8.ToArray(), TestContent.OciManifest);
        Expect.Status(get, 400, 404);
        if (get.Status == 400)
            Assert.True(get.ErrorCode is { } code && Expect.OciErrorCodes.Contains(code), $"expected an OCI error code: {get}");
    });
}
