using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Xunit;
using static Flotilla.Tests.Registry.RegistryHttp;

namespace Flotilla.Tests.Registry;

/// <summary>
/// The registry listener driven over raw HTTP: hardening (big chunked blobs, concurrency, abandoned and
/// corrupt uploads, hostile names), the headers and error codes clients depend on, discovery and deletes.
/// The OCI conformance workflows live in Conformance/; these are what they do not cover.
/// </summary>
[Collection("registry-host")]
public class RegistryServerSpec(RegistryFlotilla flotilla)
{
    private HttpClient Registry => flotilla.Registry;

    [Fact]
    public async Task The_base_endpoint_answers_with_the_api_version_and_errors_have_the_spec_shape()
    {
        using var root = await Registry.GetAsync("v2/");
        Assert.Equal(HttpStatusCode.OK, root.StatusCode);
        Assert.Equal("registry/2.0", root.Headers.GetValues("Docker-Distribution-API-Version").Single());

        using var missing = await Registry.GetAsync("v2/nothing/here/manifests/latest");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Equal("registry/2.0", missing.Headers.GetValues("Docker-Distribution-API-Version").Single());
        Assert.Equal("application/json", missing.Content.Headers.ContentType!.MediaType);
        Assert.Equal("MANIFEST_UNKNOWN", (await ErrorOfAsync(missing)).Code);

        using var wrongDigest = await Registry.GetAsync("v2/nothing/manifests/sha256:totallywrong");
        Assert.Equal(HttpStatusCode.BadRequest, wrongDigest.StatusCode);
        Assert.Equal("DIGEST_INVALID", (await ErrorOfAsync(wrongDigest)).Code);
    }

    [Fact]
    public async Task A_65_MiB_blob_uploads_in_chunks_and_reads_back_whole_and_by_range()
    {
        const string repo = "hardening/big";
        var data = RandomBytes(65 * 1024 * 1024 + 123);
        using var start = await Registry.PostAsync($"v2/{repo}/blobs/uploads/", null);
        Assert.Equal(HttpStatusCode.Accepted, start.StatusCode);
        Assert.Equal("0-0", start.Headers.GetValues("Range").Single());
        var location = start.Headers.Location!.ToString();

        const int chunk = 16 * 1024 * 1024;
        for (var offset = 0; offset < data.Length; offset += chunk)
        {
            var count = Math.Min(chunk, data.Length - offset);
            using var patch = new HttpRequestMessage(HttpMethod.Patch, location) { Content = Octets(data, offset, count) };
            patch.Content.Headers.TryAddWithoutValidation("Content-Range", $"{offset}-{offset + count - 1}");
            using var patched = await Registry.SendAsync(patch);
            Assert.True(patched.StatusCode == HttpStatusCode.Accepted, await patched.Content.ReadAsStringAsync());
            Assert.Equal($"0-{offset + count - 1}", patched.Headers.GetValues("Range").Single());
            location = patched.Headers.Location!.ToString();

            using var status = await Registry.GetAsync(location);
            Assert.Equal(HttpStatusCode.NoContent, status.StatusCode);
            Assert.Equal($"0-{offset + count - 1}", status.Headers.GetValues("Range").Single());
        }
        var digest = DigestOf(data);
        using var put = await Registry.PutAsync($"{location}?digest={digest}", null);
        Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        Assert.Equal($"/v2/{repo}/blobs/{digest}", put.Headers.Location!.ToString());

        using var head = await Registry.SendAsync(new HttpRequestMessage(HttpMethod.Head, $"v2/{repo}/blobs/{digest}"));
        Assert.Equal(HttpStatusCode.OK, head.StatusCode);
        Assert.Equal(data.Length, head.Content.Headers.ContentLength);
        Assert.Equal(digest, head.Headers.GetValues("Docker-Content-Digest").Single());

        using (var whole = await Registry.GetAsync($"v2/{repo}/blobs/{digest}", HttpCompletionOption.ResponseHeadersRead))
        await using (var stream = await whole.Content.ReadAsStreamAsync())
            Assert.Equal(digest, "sha256:" + Convert.ToHexStringLower(await SHA256.HashDataAsync(stream)));

        using var ranged = new HttpRequestMessage(HttpMethod.Get, $"v2/{repo}/blobs/{digest}");
        ranged.Headers.Range = new RangeHeaderValue(40_000_000, 40_000_099);
        using var part = await Registry.SendAsync(ranged);
        Assert.Equal(HttpStatusCode.PartialContent, part.StatusCode);
        Assert.Equal($"bytes 40000000-40000099/{data.Length}", part.Content.Headers.ContentRange!.ToString());
        Assert.Equal(data.AsSpan(40_000_000, 100).ToArray(), await part.Content.ReadAsByteArrayAsync());

        using var beyond = new HttpRequestMessage(HttpMethod.Get, $"v2/{repo}/blobs/{digest}");
        beyond.Headers.Range = new RangeHeaderValue(data.Length, null);
        using var refused = await Registry.SendAsync(beyond);
        Assert.Equal(HttpStatusCode.RequestedRangeNotSatisfiable, refused.StatusCode);
    }

    [Fact]
    public async Task A_chunk_out_of_order_is_416_and_the_upload_goes_on()
    {
        var data = RandomBytes(2000);
        using var start = await Registry.PostAsync("v2/hardening/order/blobs/uploads/", null);
        var location = start.Headers.Location!.ToString();
        async Task<HttpResponseMessage> Patch(int from, int count)
        {
            var patch = new HttpRequestMessage(HttpMethod.Patch, location) { Content = Octets(data, from, count) };
            patch.Content.Headers.TryAddWithoutValidation("Content-Range", $"{from}-{from + count - 1}");
            return await Registry.SendAsync(patch);
        }
        using (var skipped = await Patch(1000, 1000)) Assert.Equal(HttpStatusCode.RequestedRangeNotSatisfiable, skipped.StatusCode);
        using (var first = await Patch(0, 1000)) Assert.Equal(HttpStatusCode.Accepted, first.StatusCode);
        using (var again = await Patch(0, 1000))
        {
            Assert.Equal(HttpStatusCode.RequestedRangeNotSatisfiable, again.StatusCode);
            Assert.Equal("0-999", again.Headers.GetValues("Range").Single());
        }
        // The last chunk may come with the closing PUT.
        using var put = new HttpRequestMessage(HttpMethod.Put, $"{location}?digest={DigestOf(data)}") { Content = Octets(data, 1000, 1000) };
        put.Content.Headers.TryAddWithoutValidation("Content-Range", "1000-1999");
        using var done = await Registry.SendAsync(put);
        Assert.Equal(HttpStatusCode.Created, done.StatusCode);
    }

    [Fact]
    public async Task Concurrent_uploads_into_one_repository_all_land()
    {
        const string repo = "hardening/concurrent";
        var blobs = Enumerable.Range(0, 8).Select(i => RandomBytes(512 * 1024 + i)).ToList();
        var digests = await Task.WhenAll(blobs.Select(b => Task.Run(async () =>
        {
            // Streamed upload, as the Docker daemon does it: one PATCH without Content-Range, then PUT.
            using var start = await Registry.PostAsync($"v2/{repo}/blobs/uploads/", null);
            using var patch = await Registry.PatchAsync(start.Headers.Location!.ToString(), Octets(b));
            Assert.Equal(HttpStatusCode.Accepted, patch.StatusCode);
            Assert.Equal($"0-{b.Length - 1}", patch.Headers.GetValues("Range").Single());
            using var put = await Registry.PutAsync($"{patch.Headers.Location}?digest={DigestOf(b)}", null);
            Assert.Equal(HttpStatusCode.Created, put.StatusCode);
            return DigestOf(b);
        })));
        var manifest = ImageManifest(digests[0], blobs[0].Length, digests.Skip(1).Select((d, i) => (d, (long)blobs[i + 1].Length)));
        using var pushed = await Registry.PutManifestAsync(repo, "all", manifest);
        Assert.True(pushed.StatusCode == HttpStatusCode.Created, await pushed.Content.ReadAsStringAsync());
        foreach (var (digest, data) in digests.Zip(blobs))
            Assert.Equal(data, await Registry.GetByteArrayAsync($"v2/{repo}/blobs/{digest}"));
    }

    [Fact]
    public async Task An_abandoned_upload_is_never_visible_and_a_cancelled_one_is_gone()
    {
        const string repo = "hardening/abandoned";
        var data = RandomBytes(10_000);
        using var start = await Registry.PostAsync($"v2/{repo}/blobs/uploads/", null);
        var location = start.Headers.Location!.ToString();
        using (var patch = await Registry.PatchAsync(location, Octets(data))) Assert.Equal(HttpStatusCode.Accepted, patch.StatusCode);

        using (var head = await Registry.SendAsync(new HttpRequestMessage(HttpMethod.Head, $"v2/{repo}/blobs/{DigestOf(data)}")))
            Assert.Equal(HttpStatusCode.NotFound, head.StatusCode);
        Assert.False(File.Exists(Path.Combine(flotilla.DataRoot, "registry", "blobs", "sha256", DigestOf(data)[7..])));

        using (var cancel = await Registry.DeleteAsync(location)) Assert.Equal(HttpStatusCode.NoContent, cancel.StatusCode);
        using var after = await Registry.GetAsync(location);
        Assert.Equal(HttpStatusCode.NotFound, after.StatusCode);
        Assert.Equal("BLOB_UPLOAD_UNKNOWN", (await ErrorOfAsync(after)).Code);
        using var put = await Registry.PutAsync($"{location}?digest={DigestOf(data)}", null);
        Assert.Equal(HttpStatusCode.NotFound, put.StatusCode);
    }

    [Fact]
    public async Task A_wrong_digest_is_DIGEST_INVALID_and_publishes_nothing()
    {
        const string repo = "hardening/baddigest";
        var data = RandomBytes(5000);
        var claimed = DigestOf(RandomBytes(10));
        using var start = await Registry.PostAsync($"v2/{repo}/blobs/uploads/", null);
        using var put = await Registry.PutAsync($"{start.Headers.Location}?digest={claimed}", Octets(data));
        Assert.Equal(HttpStatusCode.BadRequest, put.StatusCode);
        Assert.Equal("DIGEST_INVALID", (await ErrorOfAsync(put)).Code);

        using var single = await Registry.PostAsync($"v2/{repo}/blobs/uploads/?digest={claimed}", Octets(data));
        Assert.Equal(HttpStatusCode.BadRequest, single.StatusCode);
        Assert.Equal("DIGEST_INVALID", (await ErrorOfAsync(single)).Code);

        using var malformed = await Registry.PostAsync($"v2/{repo}/blobs/uploads/?digest=sha256:xyz", Octets(data));
        Assert.Equal("DIGEST_INVALID", (await ErrorOfAsync(malformed)).Code);

        foreach (var digest in new[] { claimed, DigestOf(data) })
        {
            using var head = await Registry.SendAsync(new HttpRequestMessage(HttpMethod.Head, $"v2/{repo}/blobs/{digest}"));
            Assert.Equal(HttpStatusCode.NotFound, head.StatusCode);
            Assert.False(File.Exists(Path.Combine(flotilla.DataRoot, "registry", "blobs", "sha256", digest[7..])));
        }
    }

    /// <summary>Raw request lines, so no client library normalizes the path first.</summary>
    private async Task<(int Status, string Body)> RawGetAsync(string target)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, flotilla.RegistryPort);
        await using var stream = tcp.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"));
        using var reader = new StreamReader(stream);
        var response = await reader.ReadToEndAsync();
        var status = int.Parse(response.Split(' ')[1]);
        return (status, response[(response.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..]);
    }

    [Theory]
    [InlineData("/v2/Upper/manifests/latest")]
    [InlineData("/v2/a/..%2f..%2fetc/manifests/latest")]
    [InlineData("/v2/a//b/manifests/latest")]
    [InlineData("/v2/a/.hidden/manifests/latest")]
    [InlineData("/v2/a%00b/blobs/sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")]
    [InlineData("/v2/a%20b/tags/list")]
    public async Task Hostile_or_invalid_names_are_NAME_INVALID(string target)
    {
        var (status, body) = await RawGetAsync(target);
        Assert.True(status == 400, $"{target}: {status} {body}");
        // Kestrel itself refuses some (a NUL in the path) before any route, with an empty body.
        if (body.Length > 0) Assert.Equal("NAME_INVALID", JsonDocument.Parse(body).RootElement.GetProperty("errors")[0].GetProperty("code").GetString());
    }

    [Fact]
    public async Task Traversal_that_the_server_normalizes_away_reaches_nothing()
    {
        var (status, _) = await RawGetAsync("/v2/../../etc/passwd");
        Assert.True(status is 400 or 404, status.ToString()); // NAME_INVALID: the raw target aimed at /v2/
        // a/%2e%2e/b would be a/../b, that is b, after decoding: refused rather than normalised, so the path that
        // is authorized is the path that is served (see RegistryRequest).
        var (dotted, body) = await RawGetAsync("/v2/a/%2e%2e/b/manifests/latest");
        Assert.Equal(400, dotted);
        Assert.Contains("NAME_INVALID", body);
        var (upload, _) = await RawGetAsync("/v2/x/blobs/uploads/..%2f..%2f..%2fetc%2fpasswd");
        Assert.True(upload is 400 or 404, upload.ToString());
    }

    [Fact]
    public async Task Manifests_need_their_blobs_in_the_repository_and_a_mount_links_them()
    {
        var (_, config, layer) = await Registry.PushImageAsync("links/source", "v1");
        var json = ImageManifest(config, 100, [(layer, 1000)]);

        // The blobs exist in the registry, but not in this repository.
        using var refused = await Registry.PutManifestAsync("links/target", "v1", json);
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Equal("MANIFEST_BLOB_UNKNOWN", (await ErrorOfAsync(refused)).Code);
        using (var hidden = await Registry.SendAsync(new HttpRequestMessage(HttpMethod.Head, $"v2/links/target/blobs/{layer}")))
            Assert.Equal(HttpStatusCode.NotFound, hidden.StatusCode);

        // A mount without a source opens an ordinary upload: knowing a digest is not enough.
        using (var blind = await Registry.PostAsync($"v2/links/target/blobs/uploads/?mount={layer}", null))
            Assert.Equal(HttpStatusCode.Accepted, blind.StatusCode);
        foreach (var digest in new[] { config, layer })
        {
            using var mount = await Registry.PostAsync($"v2/links/target/blobs/uploads/?mount={digest}&from=links/source", null);
            Assert.Equal(HttpStatusCode.Created, mount.StatusCode);
            Assert.Equal($"/v2/links/target/blobs/{digest}", mount.Headers.Location!.ToString());
            Assert.Equal(digest, mount.Headers.GetValues("Docker-Content-Digest").Single());
        }
        using var accepted = await Registry.PutManifestAsync("links/target", "v1", json);
        Assert.Equal(HttpStatusCode.Created, accepted.StatusCode);

        using var missing = await Registry.PutManifestAsync("links/target", "v2", ImageManifest(DigestOf(RandomBytes(3)), 3, []));
        Assert.Equal("MANIFEST_BLOB_UNKNOWN", (await ErrorOfAsync(missing)).Code);
    }

    [Fact]
    public async Task Manifests_are_served_verbatim_by_tag_and_digest_with_their_headers()
    {
        const string repo = "manifests/verbatim";
        var config = await Registry.PushBlobAsync(repo, "{}"u8.ToArray());
        // Odd spacing on purpose: the digest is of these exact bytes.
        var json = "{ \"schemaVersion\": 2,\n  \"mediaType\": \"application/vnd.oci.image.manifest.v1+json\", \"config\": {\"mediaType\":\"application/vnd.oci.empty.v1+json\",\"digest\":\"" + config + "\",\"size\":2}, \"layers\": [] }";
        var bytes = Encoding.UTF8.GetBytes(json);
        using var put = await Registry.PutManifestAsync(repo, "v1", json);
        Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        var digest = DigestOf(bytes);
        Assert.Equal(digest, put.Headers.GetValues("Docker-Content-Digest").Single());
        Assert.Equal($"/v2/{repo}/manifests/{digest}", put.Headers.Location!.ToString());

        foreach (var reference in new[] { "v1", digest })
        {
            using var get = await Registry.GetAsync($"v2/{repo}/manifests/{reference}");
            Assert.Equal(HttpStatusCode.OK, get.StatusCode);
            Assert.Equal(OciManifest, get.Content.Headers.ContentType!.ToString());
            Assert.Equal(digest, get.Headers.GetValues("Docker-Content-Digest").Single());
            Assert.Equal(bytes, await get.Content.ReadAsByteArrayAsync());
            using var head = await Registry.SendAsync(new HttpRequestMessage(HttpMethod.Head, $"v2/{repo}/manifests/{reference}"));
            Assert.Equal(bytes.Length, head.Content.Headers.ContentLength);
            Assert.Equal(digest, head.Headers.GetValues("Docker-Content-Digest").Single());
        }

        // An index may only list manifests of the repository.
        var index = $$"""{"schemaVersion":2,"mediaType":"{{OciIndex}}","manifests":[{"mediaType":"{{OciManifest}}","digest":"{{digest}}","size":{{bytes.Length}}}]}""";
        using (var ok = await Registry.PutManifestAsync(repo, "multi", index, OciIndex)) Assert.Equal(HttpStatusCode.Created, ok.StatusCode);
        var stranger = index.Replace(digest, DigestOf(RandomBytes(4)));
        using (var bad = await Registry.PutManifestAsync(repo, "multi2", stranger, OciIndex))
            Assert.Equal("MANIFEST_BLOB_UNKNOWN", (await ErrorOfAsync(bad)).Code);

        using (var mismatch = await Registry.PutManifestAsync(repo, DigestOf(RandomBytes(4)), json)) Assert.Equal("DIGEST_INVALID", (await ErrorOfAsync(mismatch)).Code);
        using (var wrongType = await Registry.PutManifestAsync(repo, "v3", json, OciIndex)) Assert.Equal("MANIFEST_INVALID", (await ErrorOfAsync(wrongType)).Code);
        using (var badTag = await Registry.PutManifestAsync(repo, ".bad", json)) Assert.Equal(HttpStatusCode.BadRequest, badTag.StatusCode);

        var huge = "{\"schemaVersion\":2,\"mediaType\":\"" + OciManifest + "\",\"annotations\":{\"x\":\"" + new string('a', 4 * 1024 * 1024) + "\"}}";
        using var tooLarge = await Registry.PutManifestAsync(repo, "huge", huge);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, tooLarge.StatusCode);
    }

    [Fact]
    public async Task Tags_and_catalog_paginate_with_a_Link_to_the_next_page()
    {
        foreach (var tag in new[] { "b", "a", "c", "d" }) await Registry.PushImageAsync("paging/one", tag, 10);
        await Registry.PushImageAsync("paging/two", "x", 10);

        var all = JsonDocument.Parse(await Registry.GetStringAsync("v2/paging/one/tags/list")).RootElement;
        Assert.Equal("paging/one", all.GetProperty("name").GetString());
        Assert.Equal(["a", "b", "c", "d"], all.GetProperty("tags").EnumerateArray().Select(t => t.GetString()));

        using var first = await Registry.GetAsync("v2/paging/one/tags/list?n=2");
        Assert.Equal(["a", "b"], JsonDocument.Parse(await first.Content.ReadAsStringAsync()).RootElement.GetProperty("tags").EnumerateArray().Select(t => t.GetString()));
        Assert.Equal("</v2/paging/one/tags/list?n=2&last=b>; rel=\"next\"", first.Headers.GetValues("Link").Single());
        using var second = await Registry.GetAsync("v2/paging/one/tags/list?n=2&last=b");
        Assert.Equal(["c", "d"], JsonDocument.Parse(await second.Content.ReadAsStringAsync()).RootElement.GetProperty("tags").EnumerateArray().Select(t => t.GetString()));
        Assert.False(second.Headers.Contains("Link"));
        using var none = await Registry.GetAsync("v2/paging/one/tags/list?n=0");
        Assert.Empty(JsonDocument.Parse(await none.Content.ReadAsStringAsync()).RootElement.GetProperty("tags").EnumerateArray());
        using var badN = await Registry.GetAsync("v2/paging/one/tags/list?n=-1");
        Assert.Equal("PAGINATION_NUMBER_INVALID", (await ErrorOfAsync(badN)).Code);
        using var unknown = await Registry.GetAsync("v2/paging/none/tags/list");
        Assert.Equal("NAME_UNKNOWN", (await ErrorOfAsync(unknown)).Code);

        var catalog = JsonDocument.Parse(await Registry.GetStringAsync("v2/_catalog")).RootElement.GetProperty("repositories")
            .EnumerateArray().Select(r => r.GetString()!).ToList();
        Assert.Contains("paging/one", catalog);
        Assert.Contains("paging/two", catalog);
        Assert.Equal(catalog.Order(StringComparer.Ordinal), catalog);
        var index = catalog.IndexOf("paging/one");
        using var page = await Registry.GetAsync("v2/_catalog?n=1&last=" + (index == 0 ? "" : catalog[index - 1]));
        Assert.Equal(["paging/one"], JsonDocument.Parse(await page.Content.ReadAsStringAsync()).RootElement.GetProperty("repositories").EnumerateArray().Select(r => r.GetString()));
        Assert.Contains("rel=\"next\"", page.Headers.GetValues("Link").Single());
    }

    [Fact]
    public async Task Referrers_list_manifests_by_subject_and_filter_by_artifact_type()
    {
        const string repo = "referrers/app";
        var (subject, _, _) = await Registry.PushImageAsync(repo, "v1");
        var empty = await Registry.PushBlobAsync(repo, "{}"u8.ToArray());
        foreach (var (type, note) in new[] { ("application/vnd.example.sbom", "one"), ("application/vnd.example.sig", "two") })
        {
            using var put = await Registry.PutManifestAsync(repo, DigestOf(Encoding.UTF8.GetBytes(ImageManifest(empty, 2, [], subject, type, note))),
                ImageManifest(empty, 2, [], subject, type, note));
            Assert.Equal(HttpStatusCode.Created, put.StatusCode);
            Assert.Equal(subject, put.Headers.GetValues("OCI-Subject").Single());
        }
        using var all = await Registry.GetAsync($"v2/{repo}/referrers/{subject}");
        Assert.Equal(OciIndex, all.Content.Headers.ContentType!.MediaType);
        var manifests = JsonDocument.Parse(await all.Content.ReadAsStringAsync()).RootElement.GetProperty("manifests");
        Assert.Equal(2, manifests.GetArrayLength());
        Assert.Equal("one", manifests[0].GetProperty("annotations").GetProperty("org.example.note").GetString());

        using var filtered = await Registry.GetAsync($"v2/{repo}/referrers/{subject}?artifactType=application/vnd.example.sig");
        Assert.Equal("artifactType", filtered.Headers.GetValues("OCI-Filters-Applied").Single());
        var only = JsonDocument.Parse(await filtered.Content.ReadAsStringAsync()).RootElement.GetProperty("manifests");
        Assert.Equal("application/vnd.example.sig", Assert.Single(only.EnumerateArray()).GetProperty("artifactType").GetString());

        using var nothing = await Registry.GetAsync($"v2/{repo}/referrers/{DigestOf(RandomBytes(2))}");
        Assert.Equal(HttpStatusCode.OK, nothing.StatusCode);
        Assert.Empty(JsonDocument.Parse(await nothing.Content.ReadAsStringAsync()).RootElement.GetProperty("manifests").EnumerateArray());
    }

    [Fact]
    public async Task Deletes_of_tags_manifests_and_blobs()
    {
        const string repo = "deletes/app";
        var (manifest, _, layer) = await Registry.PushImageAsync(repo, "v1");
        await Registry.PutManifestAsync(repo, "v2", await Registry.GetStringAsync($"v2/{repo}/manifests/v1"));

        using (var tag = await Registry.DeleteAsync($"v2/{repo}/manifests/v1")) Assert.Equal(HttpStatusCode.Accepted, tag.StatusCode);
        using (var gone = await Registry.GetAsync($"v2/{repo}/manifests/v1")) Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
        using (var still = await Registry.GetAsync($"v2/{repo}/manifests/v2")) Assert.Equal(HttpStatusCode.OK, still.StatusCode);

        using (var byDigest = await Registry.DeleteAsync($"v2/{repo}/manifests/{manifest}")) Assert.Equal(HttpStatusCode.Accepted, byDigest.StatusCode);
        using (var v2 = await Registry.GetAsync($"v2/{repo}/manifests/v2")) Assert.Equal(HttpStatusCode.NotFound, v2.StatusCode);
        using (var again = await Registry.DeleteAsync($"v2/{repo}/manifests/{manifest}")) Assert.Equal("MANIFEST_UNKNOWN", (await ErrorOfAsync(again)).Code);
        var tags = JsonDocument.Parse(await Registry.GetStringAsync($"v2/{repo}/tags/list")).RootElement.GetProperty("tags");
        Assert.Empty(tags.EnumerateArray());

        using (var blob = await Registry.DeleteAsync($"v2/{repo}/blobs/{layer}")) Assert.Equal(HttpStatusCode.Accepted, blob.StatusCode);
        using (var gone = await Registry.GetAsync($"v2/{repo}/blobs/{layer}")) Assert.Equal("BLOB_UNKNOWN", (await ErrorOfAsync(gone)).Code);
        using (var twice = await Registry.DeleteAsync($"v2/{repo}/blobs/{layer}")) Assert.Equal(HttpStatusCode.NotFound, twice.StatusCode);
    }

    [Fact]
    public async Task Legacy_ping_and_search_answer_in_the_shape_the_docker_daemon_parses()
    {
        await Registry.PushImageAsync("search/alpha-web", "v1", 10);
        await Registry.PushImageAsync("search/beta-web", "v1", 10);
        await Registry.PushImageAsync("search/gamma-db", "v1", 10);

        var ping = JsonDocument.Parse(await Registry.GetStringAsync("v1/_ping")).RootElement;
        Assert.True(ping.GetProperty("standalone").GetBoolean());

        var result = JsonDocument.Parse(await Registry.GetStringAsync("v1/search?q=WEB&n=1&page=2")).RootElement;
        Assert.Equal("WEB", result.GetProperty("query").GetString());
        Assert.Equal(2, result.GetProperty("num_results").GetInt32());
        Assert.Equal(2, result.GetProperty("num_pages").GetInt32());
        Assert.Equal(1, result.GetProperty("page_size").GetInt32());
        Assert.Equal(2, result.GetProperty("page").GetInt32());
        var item = Assert.Single(result.GetProperty("results").EnumerateArray());
        Assert.Equal("search/beta-web", item.GetProperty("name").GetString());
        Assert.Equal("", item.GetProperty("description").GetString());
        Assert.Equal(0, item.GetProperty("star_count").GetInt32());
        Assert.False(item.GetProperty("is_official").GetBoolean());
        Assert.False(item.GetProperty("is_automated").GetBoolean());

        var defaults = JsonDocument.Parse(await Registry.GetStringAsync("v1/search?q=search/")).RootElement;
        Assert.Equal(25, defaults.GetProperty("page_size").GetInt32());
        Assert.Equal(3, defaults.GetProperty("results").GetArrayLength());
    }

    [Fact]
    public async Task Every_event_carries_the_user_who_caused_it()
    {
        const string repo = "audit/app";
        var (manifest, _, _) = await Registry.PushImageAsync(repo, "v1", user: "alice");
        using (var delete = new HttpRequestMessage(HttpMethod.Delete, $"v2/{repo}/manifests/v1"))
        {
            delete.Headers.Add(RegistryFlotilla.TestUserHeader, "bob");
            using var deleted = await Registry.SendAsync(delete);
            Assert.Equal(HttpStatusCode.Accepted, deleted.StatusCode);
        }
        await Registry.PutManifestAsync(repo, "v2", await Registry.GetStringAsync($"v2/{repo}/manifests/{manifest}"));

        using var store = flotilla.OpenStore();
        await using var session = store.QuerySession();
        var events = await session.Events.FetchStreamAsync("repository-" + repo);
        Assert.Equal(
            ["BlobLinked alice", "BlobLinked alice", "ManifestPushed alice", "ManifestTagged alice", "TagDeleted bob", "ManifestTagged anonymous"],
            events.Select(e => $"{e.Data.GetType().Name} {e.UserName}"));
    }
}
