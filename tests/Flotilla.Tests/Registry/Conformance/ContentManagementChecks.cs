using System.Text.Json;
using Xunit;
using Xunit.Abstractions;

namespace Flotilla.Tests.Registry.Conformance;

/// <summary>The suite's "Content management" workflow: deleting tags, manifests and blobs (plus cancelling an upload,
/// from the spec's main branch). Stricter than the suite: Flotilla enables deletes, so 202 is required.</summary>
public abstract class ContentManagementChecks<TRegistry>(TRegistry registry, ITestOutputHelper output)
    : ConformanceChecks<TRegistry>(registry, output) where TRegistry : RegistryUnderTest
{
    private async Task<string[]> TagsAsync(string repository)
    {
        var list = await GetAsync($"/v2/{repository}/tags/list");
        Expect.Status(list, 200, 404);
        if (list.Status == 404) return [];
        using var json = JsonDocument.Parse(list.Body);
        var tags = json.RootElement.GetProperty("tags");
        return tags.ValueKind == JsonValueKind.Null ? [] : tags.EnumerateArray().Select(t => t.GetString()!).Order(StringComparer.Ordinal).ToArray();
    }

    [Fact]
    public Task Manifest_DELETE_by_tag_is_202_and_keeps_the_manifest() => Check(async () =>
    {
        var repository = Registry.NewRepository("manage");
        var manifest = await PushImageAsync(repository, "tagtest0", "keep");
        Expect.Status(await Wire.SendAsync(HttpMethod.Delete, $"/v2/{repository}/manifests/tagtest0"), 202);
        Expect.Status(await GetAsync($"/v2/{repository}/manifests/tagtest0", AcceptOci), 404);
        Expect.Status(await GetAsync($"/v2/{repository}/manifests/{manifest.Digest}", AcceptOci), 200);
        Assert.Equal(["keep"], await TagsAsync(repository));
    });

    [Fact]
    public Task Manifest_DELETE_by_digest_is_202_then_GET_is_404() => Check(async () =>
    {
        var repository = Registry.NewRepository("manage");
        var manifest = await PushImageAsync(repository, "tagtest0");
        Expect.Status(await Wire.SendAsync(HttpMethod.Delete, $"/v2/{repository}/manifests/{manifest.Digest}"), 202);
        var get = await GetAsync($"/v2/{repository}/manifests/{manifest.Digest}", AcceptOci);
        Expect.Status(get, 404);
        Expect.ErrorCode(get, "MANIFEST_UNKNOWN");
    });

    [Fact]
    public Task Tags_list_reflects_a_manifest_deletion() => Check(async () =>
    {
        var repository = Registry.NewRepository("manage");
        var deleted = await PushImageAsync(repository, "tagtest0", "tagtest1");
        await PushImageAsync(repository, "other");
        Assert.Equal(["other", "tagtest0", "tagtest1"], await TagsAsync(repository));
        Expect.Status(await Wire.SendAsync(HttpMethod.Delete, $"/v2/{repository}/manifests/{deleted.Digest}"), 202);
        Assert.Equal(["other"], await TagsAsync(repository));
        Expect.Status(await GetAsync($"/v2/{repository}/manifests/tagtest1", AcceptOci), 404);
    });

    [Fact]
    public Task Manifest_DELETE_of_an_unknown_digest_is_404() => Check(async () =>
    {
        var repository = Registry.NewRepository("manage");
        await PushImageAsync(repository, "latest");
        var delete = await Wire.SendAsync(HttpMethod.Delete, $"/v2/{repository}/manifests/{TestContent.UnknownDigest}");
        Expect.Status(delete, 404);
        Expect.ErrorCode(delete, "MANIFEST_UNKNOWN");
    });

    [Fact]
    public Task Blob_DELETE_is_202_then_GET_is_404() => Check(async () =>
    {
        var repository = Registry.NewRepository("manage");
        var config = TestContent.Config();
        var layer = TestContent.RandomBlob(80);
        await PushBlobAsync(repository, config);
        await PushBlobAsync(repository, layer);
        await PushManifestAsync(repository, "tagtest0", TestContent.ImageManifest(config, [layer]));
        foreach (var blob in new[] { config, layer })
        {
            Expect.Status(await Wire.SendAsync(HttpMethod.Delete, $"/v2/{repository}/blobs/{blob.Digest}"), 202);
            var get = await GetAsync($"/v2/{repository}/blobs/{blob.Digest}");
            Expect.Status(get, 404);
            Expect.ErrorCode(get, "BLOB_UNKNOWN");
        }
    });

    [Fact]
    public Task Blob_DELETE_of_an_unknown_digest_is_404() => Check(async () =>
    {
        var repository = Registry.NewRepository("manage");
        await PushImageAsync(repository, "latest");
        var delete = await Wire.SendAsync(HttpMethod.Delete, $"/v2/{repository}/blobs/{TestContent.UnknownDigest}");
        Expect.Status(delete, 404);
        Expect.ErrorCode(delete, "BLOB_UNKNOWN");
    });

    [Fact]
    public Task Upload_DELETE_cancels_the_session() => Check(async () =>
    {
        var repository = Registry.NewRepository("manage");
        var blob = TestContent.RandomBlob(50);
        var location = await StartUploadAsync(repository);
        var patch = await Wire.SendAsync(HttpMethod.Patch, location, blob.Bytes, TestContent.Octets);
        Expect.Status(patch, 202);
        var session = Expect.Header(patch, "Location");
        Expect.Status(await Wire.SendAsync(HttpMethod.Delete, session), 204);
        var status = await GetAsync(session);
        Expect.Status(status, 404);
        Expect.ErrorCode(status, "BLOB_UPLOAD_UNKNOWN");
        Expect.Status(await Wire.SendAsync(HttpMethod.Put, RegistryWire.WithQuery(session, "digest", blob.Digest), [], TestContent.Octets), 404);
        Expect.Status(await HeadAsync($"/v2/{repository}/blobs/{blob.Digest}"), 404);
    });
}
