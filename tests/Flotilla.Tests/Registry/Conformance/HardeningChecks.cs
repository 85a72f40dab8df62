using Xunit;
using Xunit.Abstractions;

namespace Flotilla.Tests.Registry.Conformance;

/// <summary>Hardening cases as conformance checks: size, concurrency, half-finished and lying uploads, hostile names.</summary>
public abstract class HardeningChecks<TRegistry>(TRegistry registry, ITestOutputHelper output)
    : ConformanceChecks<TRegistry>(registry, output) where TRegistry : RegistryUnderTest
{
    private static readonly TimeSpan BigTransfer = TimeSpan.FromSeconds(60);

    /// <summary>64 MiB and a bit, in 16 MiB chunks; read back through SHA-256 so neither side buffers a copy.</summary>
    [Fact]
    public Task Large_blob_uploaded_in_chunks_reads_back_with_its_digest() => Check(async () =>
    {
        var repository = Registry.NewRepository("large");
        var blob = TestContent.RandomBlob(64 * 1024 * 1024 + 4097);
        const int chunk = 16 * 1024 * 1024;
        var location = await StartUploadAsync(repository);
        for (var start = 0; start < blob.Size; start += chunk)
        {
            var length = (int)Math.Min(chunk, blob.Size - start);
            var patch = await Wire.SendAsync(HttpMethod.Patch, location, blob.Bytes[start..(start + length)], TestContent.Octets,
                new Dictionary<string, string> { ["Content-Range"] = $"{start}-{start + length - 1}" }, BigTransfer);
            Expect.Status(patch, 202);
            Expect.HeaderEquals(patch, "Range", $"0-{start + length - 1}");
            location = Expect.Header(patch, "Location");
        }
        var put = await Wire.SendAsync(HttpMethod.Put, RegistryWire.WithQuery(location, "digest", blob.Digest), [], TestContent.Octets,
            timeout: BigTransfer);
        Expect.Status(put, 201);
        var head = await HeadAsync($"/v2/{repository}/blobs/{blob.Digest}");
        Expect.Status(head, 200);
        Expect.HeaderEquals(head, "Content-Length", blob.Size.ToString());
        var (status, readLength, digest) = await Wire.GetDigestOfAsync($"/v2/{repository}/blobs/{blob.Digest}", BigTransfer);
        Assert.Equal((200, blob.Size, blob.Digest), (status, readLength, digest));
    });

    /// <summary>Ten streamed uploads at once into one repository, two of them the same blob.</summary>
    [Fact]
    public Task Concurrent_uploads_to_one_repository_all_land() => Check(async () =>
    {
        var repository = Registry.NewRepository("concurrent");
        var blobs = Enumerable.Range(0, 8).Select(_ => TestContent.RandomBlob(256 * 1024)).ToArray();
        var uploads = blobs.Append(blobs[0]).Append(blobs[1]).Select(async blob =>
        {
            var location = await StartUploadAsync(repository);
            var patch = await Wire.SendAsync(HttpMethod.Patch, location, blob.Bytes, TestContent.Octets);
            Expect.Status(patch, 202);
            var put = await Wire.SendAsync(HttpMethod.Put, RegistryWire.WithQuery(Expect.Header(patch, "Location"), "digest", blob.Digest),
                [], TestContent.Octets);
            Expect.Status(put, 201);
        });
        await Task.WhenAll(uploads);
        foreach (var blob in blobs)
        {
            var get = await GetAsync($"/v2/{repository}/blobs/{blob.Digest}");
            Expect.Status(get, 200);
            Expect.Body(get, blob);
        }
        var config = TestContent.Config();
        await PushBlobAsync(repository, config);
        await PushManifestAsync(repository, "all", TestContent.ImageManifest(config, blobs));
    });

    [Fact]
    public Task Abandoned_upload_is_never_visible_as_a_blob() => Check(async () =>
    {
        var repository = Registry.NewRepository("abandoned");
        await PushImageAsync(repository, "latest");
        var blob = TestContent.RandomBlob(1000);
        var location = await StartUploadAsync(repository);
        Expect.Status(await Wire.SendAsync(HttpMethod.Patch, location, blob.Bytes, TestContent.Octets), 202);
        // All the bytes are there, only the closing PUT is missing: the blob must not exist yet.
        Expect.Status(await HeadAsync($"/v2/{repository}/blobs/{blob.Digest}"), 404);
        var get = await GetAsync($"/v2/{repository}/blobs/{blob.Digest}");
        Expect.Status(get, 404);
        Expect.ErrorCode(get, "BLOB_UNKNOWN");
    });

    [Fact]
    public Task Blob_PUT_with_a_wrong_digest_is_400_DIGEST_INVALID_and_stores_nothing() => Check(async () =>
    {
        var repository = Registry.NewRepository("baddigest");
        await PushImageAsync(repository, "latest");
        var blob = TestContent.RandomBlob(500);
        var claimed = TestContent.RandomBlob(500).Digest;
        var location = await StartUploadAsync(repository);
        var put = await Wire.SendAsync(HttpMethod.Put, RegistryWire.WithQuery(location, "digest", claimed), blob.Bytes, TestContent.Octets);
        Expect.Status(put, 400);
        Expect.ErrorCode(put, "DIGEST_INVALID");
        Expect.Status(await HeadAsync($"/v2/{repository}/blobs/{blob.Digest}"), 404);
        Expect.Status(await HeadAsync($"/v2/{repository}/blobs/{claimed}"), 404);
    });

    [Fact]
    public Task Manifest_PUT_under_a_wrong_digest_is_400_DIGEST_INVALID() => Check(async () =>
    {
        var repository = Registry.NewRepository("baddigest");
        var config = TestContent.Config();
        var layer = TestContent.RandomBlob(30);
        await PushBlobAsync(repository, config);
        await PushBlobAsync(repository, layer);
        var manifest = TestContent.ImageManifest(config, [layer]);
        var put = await Wire.SendAsync(HttpMethod.Put, $"/v2/{repository}/manifests/{TestContent.UnknownDigest}", manifest.Bytes, manifest.MediaType);
        Expect.Status(put, 400);
        Expect.ErrorCode(put, "DIGEST_INVALID");
        Expect.Status(await GetAsync($"/v2/{repository}/manifests/{manifest.Digest}", AcceptOci), 404);
    });

    /// <summary>Range reads (the Docker daemon resumes layer pulls with them): 206 with exactly the bytes asked.</summary>
    [Fact]
    public Task Blob_GET_with_Range_is_206_with_those_bytes() => Check(async () =>
    {
        var repository = Registry.NewRepository("range");
        var blob = TestContent.RandomBlob(100);
        await PushBlobAsync(repository, blob);
        var get = await GetAsync($"/v2/{repository}/blobs/{blob.Digest}", new Dictionary<string, string> { ["Range"] = "bytes=10-19" });
        Expect.Status(get, 206);
        Assert.Equal(blob.Bytes[10..20], get.Body);
        Expect.HeaderEquals(get, "Content-Range", "bytes 10-19/100");
    });

    /// <summary>Names outside the grammar, sent byte for byte (no client-side path clean-up): refused with an OCI error,
    /// never redirected or routed elsewhere. Note for servers on Kestrel: it removes dot segments before routing
    /// (<c>/v2/../x/tags/list</c> arrives as <c>/x/tags/list</c>), so the raw request target has to be looked at.</summary>
    [Theory]
    [InlineData("../x")]
    [InlineData("A/B")]
    [InlineData("a//b")]
    public Task Invalid_repository_names_are_refused(string name) => Check(async () =>
    {
        foreach (var (method, path) in new[]
                 {
                     (HttpMethod.Get, $"/v2/{name}/tags/list"),
                     (HttpMethod.Get, $"/v2/{name}/manifests/latest"),
                     (HttpMethod.Post, $"/v2/{name}/blobs/uploads/"),
                 })
        {
            var response = await Wire.SendRawPathAsync(method, path);
            Expect.Status(response, 400, 404);
            Expect.ErrorCode(response, "NAME_INVALID", "NAME_UNKNOWN");
        }
    }, variant: name);
}
