using Xunit;
using Xunit.Abstractions;

namespace Flotilla.Tests.Registry.Conformance;

/// <summary>The suite's "Push" workflow: streamed, monolithic, single-POST and chunked uploads, cross-repository
/// mounts and manifest uploads.</summary>
public abstract class PushChecks<TRegistry>(TRegistry registry, ITestOutputHelper output)
    : ConformanceChecks<TRegistry>(registry, output) where TRegistry : RegistryUnderTest
{
    private static Dictionary<string, string> ContentRange(int start, int length) => new()
    {
        ["Content-Range"] = $"{start}-{start + length - 1}",
    };

    private async Task ExpectBlobAsync(string repository, Content blob)
    {
        var get = await GetAsync($"/v2/{repository}/blobs/{blob.Digest}");
        Expect.Status(get, 200);
        Expect.Body(get, blob);
    }

    [Fact]
    public Task Streamed_upload_PATCH_then_PUT_is_201() => Check(async () =>
    {
        var repository = Registry.NewRepository("push");
        var blob = TestContent.RandomBlob(42);
        var location = await StartUploadAsync(repository);
        // No Content-Range: the whole body is appended, as the Docker daemon pushes.
        var patch = await Wire.SendAsync(HttpMethod.Patch, location, blob.Bytes, TestContent.Octets);
        Expect.Status(patch, 202);
        Expect.HeaderEquals(patch, "Range", $"0-{blob.Size - 1}");
        var put = await Wire.SendAsync(HttpMethod.Put, RegistryWire.WithQuery(Expect.Header(patch, "Location"), "digest", blob.Digest),
            [], TestContent.Octets);
        Expect.Status(put, 201);
        Expect.Header(put, "Location");
        Expect.HeaderIfPresent(put, "Docker-Content-Digest", blob.Digest);
        await ExpectBlobAsync(repository, blob);
    });

    [Fact]
    public Task Single_POST_with_digest_is_201_or_an_upload_session() => Check(async () =>
    {
        var repository = Registry.NewRepository("push");
        var blob = TestContent.Config();
        var post = await Wire.SendAsync(HttpMethod.Post, $"/v2/{repository}/blobs/uploads/?digest={blob.Digest}", blob.Bytes, TestContent.Octets);
        Expect.Status(post, 201, 202);
        Expect.Header(post, "Location");
        var get = await GetAsync($"/v2/{repository}/blobs/{blob.Digest}");
        // 202 means "not supported, here is a session": the body must not have been stored then.
        Expect.Status(get, post.Status == 201 ? 200 : 404);
    });

    [Fact]
    public Task Monolithic_POST_then_PUT_is_201() => Check(async () =>
    {
        var repository = Registry.NewRepository("push");
        foreach (var blob in new[] { TestContent.Config(), TestContent.RandomBlob(300) })
        {
            var location = await StartUploadAsync(repository);
            var put = await Wire.SendAsync(HttpMethod.Put, RegistryWire.WithQuery(location, "digest", blob.Digest), blob.Bytes, TestContent.Octets);
            Expect.Status(put, 201);
            Expect.Header(put, "Location");
            Expect.HeaderIfPresent(put, "Docker-Content-Digest", blob.Digest);
            await ExpectBlobAsync(repository, blob);
        }
    });

    /// <summary>A fresh chunked session: its Location and the chunk size to use (honouring OCI-Chunk-Min-Length).</summary>
    private async Task<(string Location, Content Blob, int ChunkSize)> StartChunkedAsync(string repository)
    {
        var post = await Wire.SendAsync(HttpMethod.Post, $"/v2/{repository}/blobs/uploads/", [], null);
        Expect.Status(post, 202);
        var chunk = 21;
        if (post.Header("OCI-Chunk-Min-Length") is { } min && int.TryParse(min, out var minLength)) chunk = Math.Max(chunk, minLength);
        return (Expect.Header(post, "Location"), TestContent.RandomBlob(chunk * 2), chunk);
    }

    private Task<RegistryResponse> PatchChunkAsync(string location, Content blob, int start, int length) =>
        Wire.SendAsync(HttpMethod.Patch, location, blob.Bytes[start..(start + length)], TestContent.Octets, ContentRange(start, length));

    [Fact]
    public Task Chunked_out_of_order_chunk_is_416() => Check(async () =>
    {
        var (location, blob, chunk) = await StartChunkedAsync(Registry.NewRepository("chunked"));
        Expect.Status(await PatchChunkAsync(location, blob, chunk, chunk), 416);
    });

    [Fact]
    public Task Chunked_first_chunk_is_202_with_its_range() => Check(async () =>
    {
        var (location, blob, chunk) = await StartChunkedAsync(Registry.NewRepository("chunked"));
        var patch = await PatchChunkAsync(location, blob, 0, chunk);
        Expect.Status(patch, 202);
        Expect.HeaderEquals(patch, "Range", $"0-{chunk - 1}");
        Expect.Header(patch, "Location");
    });

    [Fact]
    public Task Chunked_retried_chunk_is_416() => Check(async () =>
    {
        var (location, blob, chunk) = await StartChunkedAsync(Registry.NewRepository("chunked"));
        Expect.Status(await PatchChunkAsync(location, blob, 0, chunk), 202);
        // The suite resends the first chunk to the session's first Location.
        Expect.Status(await PatchChunkAsync(location, blob, 0, chunk), 416);
    });

    [Fact]
    public Task Chunked_upload_status_is_204_with_location_and_range() => Check(async () =>
    {
        var (location, blob, chunk) = await StartChunkedAsync(Registry.NewRepository("chunked"));
        var patch = await PatchChunkAsync(location, blob, 0, chunk);
        Expect.Status(patch, 202);
        var status = await GetAsync(Expect.Header(patch, "Location"));
        Expect.Status(status, 204);
        Expect.Header(status, "Location");
        Expect.HeaderEquals(status, "Range", $"0-{chunk - 1}");
    });

    [Fact]
    public Task Chunked_upload_completes_with_the_whole_digest() => Check(async () =>
    {
        var repository = Registry.NewRepository("chunked");
        var (location, blob, chunk) = await StartChunkedAsync(repository);
        var first = await PatchChunkAsync(location, blob, 0, chunk);
        Expect.Status(first, 202);
        var status = await GetAsync(Expect.Header(first, "Location"));
        Expect.Status(status, 204);
        var second = await PatchChunkAsync(Expect.Header(status, "Location"), blob, chunk, chunk);
        Expect.Status(second, 202);
        Expect.HeaderEquals(second, "Range", $"0-{blob.Size - 1}");
        var put = await Wire.SendAsync(HttpMethod.Put, RegistryWire.WithQuery(Expect.Header(second, "Location"), "digest", blob.Digest),
            [], TestContent.Octets);
        Expect.Status(put, 201);
        Expect.Header(put, "Location");
        await ExpectBlobAsync(repository, blob);
    });

    [Fact]
    public Task Chunked_upload_may_close_with_the_last_chunk_in_the_PUT() => Check(async () =>
    {
        var repository = Registry.NewRepository("chunked");
        var (location, blob, chunk) = await StartChunkedAsync(repository);
        var first = await PatchChunkAsync(location, blob, 0, chunk);
        Expect.Status(first, 202);
        var put = await Wire.SendAsync(HttpMethod.Put, RegistryWire.WithQuery(Expect.Header(first, "Location"), "digest", blob.Digest),
            blob.Bytes[chunk..], TestContent.Octets, ContentRange(chunk, chunk));
        Expect.Status(put, 201);
        await ExpectBlobAsync(repository, blob);
    });

    /// <summary>Two repositories, a blob pushed to the first only (the suite's cross-mount namespace setup).</summary>
    private async Task<(string Source, string Target, Content Blob)> MountSetupAsync()
    {
        var source = Registry.NewRepository("mount-from");
        var target = Registry.NewRepository("mount-to");
        var blob = TestContent.RandomBlob(42);
        await PushBlobAsync(source, blob);
        return (source, target, blob);
    }

    [Fact]
    public Task Cross_mount_from_another_repository_is_201_or_an_upload_session() => Check(async () =>
    {
        var (source, target, blob) = await MountSetupAsync();
        var mount = await Wire.SendAsync(HttpMethod.Post, $"/v2/{target}/blobs/uploads/?mount={blob.Digest}&from={source}");
        Expect.Status(mount, 201, 202);
        var location = Wire.Resolve(Expect.Header(mount, "Location")).AbsolutePath;
        if (mount.Status == 201)
        {
            Assert.Equal($"/v2/{target}/blobs/{blob.Digest}", location);
            Expect.HeaderIfPresent(mount, "Docker-Content-Digest", blob.Digest);
            await ExpectBlobAsync(target, blob);
        }
        else
        {
            Assert.StartsWith($"/v2/{target}/blobs/uploads/", location);
        }
    });

    [Fact]
    public Task Cross_mount_of_an_unknown_blob_yields_an_upload_session() => Check(async () =>
    {
        var (source, target, _) = await MountSetupAsync();
        var mount = await Wire.SendAsync(HttpMethod.Post, $"/v2/{target}/blobs/uploads/?mount={TestContent.UnknownDigest}&from={source}");
        Expect.Status(mount, 202);
        Assert.StartsWith($"/v2/{target}/blobs/uploads/", Wire.Resolve(Expect.Header(mount, "Location")).AbsolutePath);
    });

    [Fact]
    public Task Cross_mount_without_from_of_an_unknown_blob_yields_an_upload_session() => Check(async () =>
    {
        var target = Registry.NewRepository("mount-to");
        var mount = await Wire.SendAsync(HttpMethod.Post, $"/v2/{target}/blobs/uploads/?mount={TestContent.UnknownDigest}");
        Expect.Status(mount, 202);
        Assert.StartsWith($"/v2/{target}/blobs/uploads/", Wire.Resolve(Expect.Header(mount, "Location")).AbsolutePath);
    });

    /// <summary>Without <c>from</c> a registry may find the blob itself (201, "automatic cross-mount") or open a session.</summary>
    [Fact]
    public Task Cross_mount_without_from_of_a_known_blob_is_201_or_an_upload_session() => Check(async () =>
    {
        var (_, target, blob) = await MountSetupAsync();
        var mount = await Wire.SendAsync(HttpMethod.Post, $"/v2/{target}/blobs/uploads/?mount={blob.Digest}");
        Expect.Status(mount, 201, 202);
        var location = Wire.Resolve(Expect.Header(mount, "Location")).AbsolutePath;
        if (mount.Status == 201) await ExpectBlobAsync(target, blob);
        else Assert.StartsWith($"/v2/{target}/blobs/uploads/", location);
    });

    [Fact]
    public Task Manifest_PUT_by_tag_is_201_with_location_and_digest() => Check(async () =>
    {
        var repository = Registry.NewRepository("push");
        var config = TestContent.Config();
        var layer = TestContent.RandomBlob(100);
        await PushBlobAsync(repository, config);
        await PushBlobAsync(repository, layer);
        var manifest = TestContent.ImageManifest(config, [layer]);
        for (var i = 0; i < 4; i++)
        {
            var put = await Wire.SendAsync(HttpMethod.Put, $"/v2/{repository}/manifests/test{i}", manifest.Bytes, manifest.MediaType);
            Expect.Status(put, 201);
            Expect.Header(put, "Location");
            // The Docker daemon reads the pushed manifest's digest from this header and fails without it.
            Expect.HeaderEquals(put, "Docker-Content-Digest", manifest.Digest);
        }
        var get = await GetAsync($"/v2/{repository}/manifests/{manifest.Digest}", AcceptOci);
        Expect.Status(get, 200);
        Expect.Body(get, manifest);
    });

    [Fact]
    public Task Manifest_with_no_layers_is_accepted() => Check(async () =>
    {
        var repository = Registry.NewRepository("push");
        var config = TestContent.Config();
        await PushBlobAsync(repository, config);
        var manifest = TestContent.ImageManifest(config, []);
        var put = await Wire.SendAsync(HttpMethod.Put, $"/v2/{repository}/manifests/emptylayer", manifest.Bytes, manifest.MediaType);
        Expect.Status(put, 201);
        Expect.Header(put, "Location");
        Expect.Body(await GetAsync($"/v2/{repository}/manifests/emptylayer", AcceptOci), manifest);
    });

    [Fact]
    public Task Manifest_PUT_by_digest_is_201() => Check(async () =>
    {
        var repository = Registry.NewRepository("push");
        var manifest = await PushImageAsync(repository);
        var get = await GetAsync($"/v2/{repository}/manifests/{manifest.Digest}", AcceptOci);
        Expect.Status(get, 200);
        Expect.Body(get, manifest);
    });
}
