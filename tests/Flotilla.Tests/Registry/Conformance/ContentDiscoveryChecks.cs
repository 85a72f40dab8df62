using System.Text.Json;
using System.Text.RegularExpressions;
using Xunit;
using Xunit.Abstractions;

namespace Flotilla.Tests.Registry.Conformance;

/// <summary>The suite's "Content discovery" workflow: tag listing with <c>n</c>/<c>last</c>, the referrers API
/// (with <c>OCI-Subject</c>, the <c>artifactType</c> filter and <c>OCI-Filters-Applied</c>), plus <c>_catalog</c>
/// pagination from distribution's API.</summary>
public abstract partial class ContentDiscoveryChecks<TRegistry>(TRegistry registry, ITestOutputHelper output)
    : ConformanceChecks<TRegistry>(registry, output) where TRegistry : RegistryUnderTest
{
    // Pushed out of order, so a registry that lists tags in storage or insertion order is caught.
    private static readonly string[] TagsInPushOrder = ["test3", "test0", "test5", "test1", "test4", "test2"];

    private sealed record Tagged(string Repository);

    private Task<Tagged> TaggedAsync() => Registry.OnceAsync("tags", async () =>
    {
        var repository = Registry.NewRepository("tags");
        await PushImageAsync(repository, TagsInPushOrder);
        return new Tagged(repository);
    });

    private static (string Name, string[] Tags) ParseTags(RegistryResponse response)
    {
        Expect.Status(response, 200);
        using var json = JsonDocument.Parse(response.Body);
        var tags = json.RootElement.GetProperty("tags");
        return (json.RootElement.GetProperty("name").GetString()!,
            tags.ValueKind == JsonValueKind.Null ? [] : tags.EnumerateArray().Select(t => t.GetString()!).ToArray());
    }

    /// <summary>The target of <c>Link: &lt;url&gt;; rel="next"</c>, or null without one.</summary>
    private static string? NextLink(RegistryResponse response)
    {
        if (response.Header("Link") is not { } link) return null;
        var match = LinkNext().Match(link);
        Assert.True(match.Success, $"Link header is not <url>; rel=\"next\": {response}");
        return match.Groups[1].Value;
    }

    [GeneratedRegex("<([^>]+)>\\s*;\\s*rel=\"?next\"?")]
    private static partial Regex LinkNext();

    [Fact]
    public Task Tags_list_is_200_with_the_name_and_every_tag() => Check(async () =>
    {
        var tagged = await TaggedAsync();
        var (name, tags) = ParseTags(await GetAsync($"/v2/{tagged.Repository}/tags/list"));
        Assert.Equal(tagged.Repository, name);
        Assert.Equal(TagsInPushOrder.Order(StringComparer.Ordinal), tags.Order(StringComparer.Ordinal));
    });

    [Fact]
    public Task Tags_list_is_in_lexical_order() => Check(async () =>
    {
        var tagged = await TaggedAsync();
        var (_, tags) = ParseTags(await GetAsync($"/v2/{tagged.Repository}/tags/list"));
        Assert.Equal(tags.Order(StringComparer.Ordinal), tags);
    });

    [Fact]
    public Task Tags_list_n_returns_exactly_n() => Check(async () =>
    {
        var tagged = await TaggedAsync();
        var (_, all) = ParseTags(await GetAsync($"/v2/{tagged.Repository}/tags/list"));
        var (_, page) = ParseTags(await GetAsync($"/v2/{tagged.Repository}/tags/list?n=3"));
        Assert.Equal(all[..3], page);
    });

    [Fact]
    public Task Tags_list_last_starts_after_that_tag() => Check(async () =>
    {
        var tagged = await TaggedAsync();
        var (_, all) = ParseTags(await GetAsync($"/v2/{tagged.Repository}/tags/list"));
        var (_, first) = ParseTags(await GetAsync($"/v2/{tagged.Repository}/tags/list?n=3"));
        Assert.Equal(3, first.Length);
        var (_, second) = ParseTags(await GetAsync($"/v2/{tagged.Repository}/tags/list?n=3&last={first[^1]}"));
        Assert.Equal(all[3..], second);
    });

    [Fact]
    public Task Tags_list_pages_link_to_the_next_page() => Check(async () =>
    {
        var tagged = await TaggedAsync();
        var (_, all) = ParseTags(await GetAsync($"/v2/{tagged.Repository}/tags/list"));
        var collected = new List<string>();
        string? next = $"/v2/{tagged.Repository}/tags/list?n=4";
        var pages = 0;
        while (next is not null && pages++ < 10)
        {
            var response = await GetAsync(next);
            var (_, page) = ParseTags(response);
            Assert.True(page.Length <= 4, $"page larger than n: {response}");
            collected.AddRange(page);
            next = NextLink(response);
            if (next is not null) Assert.Equal(4, page.Length);
        }
        Assert.Equal(2, pages);
        Assert.Equal(all, collected);
    });

    /// <summary><c>_catalog</c> (distribution's API, not OCI's): paging with <c>n</c> and <c>Link</c> walks the same
    /// sorted list as one request, and <c>last</c> continues after that repository.</summary>
    [Fact]
    public Task Catalog_pages_with_n_last_and_Link() => Check(async () =>
    {
        for (var i = 0; i < 3; i++) await PushImageAsync(Registry.NewRepository("catalog"), "latest");
        var all = await CatalogAsync("/v2/_catalog");
        Assert.Equal(all.Order(StringComparer.Ordinal), all);
        var paged = await CatalogAsync("/v2/_catalog?n=2", pageSize: 2);
        Assert.Equal(all, paged);
        var afterFirst = await GetAsync($"/v2/_catalog?n=2&last={all[0]}");
        Expect.Status(afterFirst, 200);
        using var json = JsonDocument.Parse(afterFirst.Body);
        Assert.Equal(all[1..3], json.RootElement.GetProperty("repositories").EnumerateArray().Select(r => r.GetString()).ToArray());
    });

    private async Task<List<string>> CatalogAsync(string first, int? pageSize = null)
    {
        var repositories = new List<string>();
        string? next = first;
        for (var pages = 0; next is not null && pages < 1000; pages++)
        {
            var response = await GetAsync(next);
            Expect.Status(response, 200);
            using var json = JsonDocument.Parse(response.Body);
            var page = json.RootElement.GetProperty("repositories").EnumerateArray().Select(r => r.GetString()!).ToArray();
            if (pageSize is { } n) Assert.True(page.Length <= n, $"page larger than n: {response}");
            repositories.AddRange(page);
            next = NextLink(response);
        }
        return repositories;
    }

    // ---- referrers -------------------------------------------------------------------------------------------

    private const string AnnotationKey = "org.opencontainers.conformance.test";
    private const string ArtifactTypeA = "application/vnd.nhl.peanut.butter.bagel";
    private const string ArtifactTypeB = "application/vnd.nba.strawberry.jam.croissant";
    private const string ArtifactTypeIndex = "application/vnd.food.stand";

    /// <summary>The suite's referrers graph: five referrers of one image (artifact type in the config or in
    /// <c>artifactType</c>, one of them an index), one referrer of an image that is never pushed.</summary>
    private sealed record ReferrersGraph(string Repository, Content Subject, Content MissingSubject,
        IReadOnlyDictionary<string, (string ArtifactType, string Annotation, string MediaType, long Size)> Referrers,
        Content OrphanReferrer, IReadOnlyList<(Content Manifest, RegistryResponse Put, string Subject)> Pushes);

    private Task<ReferrersGraph> GraphAsync() => Registry.OnceAsync("referrers", async () =>
    {
        var repository = Registry.NewRepository("referrers");
        var blobA = TestContent.Blob("NHL Peanut Butter on my NHL bagel"u8.ToArray(), ArtifactTypeA);
        var blobB = TestContent.Blob("NBA Strawberry Jam on my NBA croissant"u8.ToArray(), ArtifactTypeB);
        var subjectConfig = TestContent.Config();
        var subjectLayer = TestContent.RandomBlob(120);
        var subject = TestContent.ImageManifest(subjectConfig, [subjectLayer]);
        var missingConfig = TestContent.Config();
        var missingSubject = TestContent.ImageManifest(missingConfig, [subjectLayer]);
        var empty = TestContent.EmptyJson;

        Dictionary<string, string> Note(string value) => new() { [AnnotationKey] = value };
        var aConfig = TestContent.ImageManifest(blobA, [empty], subject, annotations: Note("test config a"), configMediaType: ArtifactTypeA);
        var aLayer = TestContent.ImageManifest(empty, [blobA], subject, ArtifactTypeA, Note("test layer a"));
        var index = TestContent.ImageIndex([aConfig, aLayer], subject, ArtifactTypeIndex, Note("test index"));
        var bConfig = TestContent.ImageManifest(blobB, [empty], subject, annotations: Note("test config b"), configMediaType: ArtifactTypeB);
        var bLayer = TestContent.ImageManifest(empty, [blobB], subject, ArtifactTypeB, Note("test layer b"));
        var orphan = TestContent.ImageManifest(empty, [blobB], missingSubject, ArtifactTypeB);

        var pushes = new List<(Content, RegistryResponse, string)>();
        async Task Referrer(Content manifest, string subjectDigest) =>
            pushes.Add((manifest, await PushManifestAsync(repository, manifest.Digest, manifest), subjectDigest));

        // The suite's order: some referrers before their subject exists, some after.
        await PushBlobAsync(repository, empty);
        await PushBlobAsync(repository, blobA);
        await Referrer(aConfig, subject.Digest);
        await Referrer(aLayer, subject.Digest);
        await Referrer(index, subject.Digest);
        await PushBlobAsync(repository, subjectConfig);
        await PushBlobAsync(repository, subjectLayer);
        await PushManifestAsync(repository, "tagtest0", subject);
        await PushBlobAsync(repository, blobB);
        await Referrer(bConfig, subject.Digest);
        await Referrer(bLayer, subject.Digest);
        await Referrer(orphan, missingSubject.Digest);

        var referrers = new Dictionary<string, (string, string, string, long)>
        {
            [aConfig.Digest] = (ArtifactTypeA, "test config a", TestContent.OciManifest, aConfig.Size),
            [aLayer.Digest] = (ArtifactTypeA, "test layer a", TestContent.OciManifest, aLayer.Size),
            [index.Digest] = (ArtifactTypeIndex, "test index", TestContent.OciIndex, index.Size),
            [bConfig.Digest] = (ArtifactTypeB, "test config b", TestContent.OciManifest, bConfig.Size),
            [bLayer.Digest] = (ArtifactTypeB, "test layer b", TestContent.OciManifest, bLayer.Size),
        };
        return new ReferrersGraph(repository, subject, missingSubject, referrers, orphan, pushes);
    });

    private static JsonElement[] ParseReferrers(RegistryResponse response)
    {
        Expect.Status(response, 200);
        Expect.HeaderEquals(response, "Content-Type", TestContent.OciIndex);
        using var json = JsonDocument.Parse(response.Body);
        Assert.Equal(2, json.RootElement.GetProperty("schemaVersion").GetInt32());
        return json.RootElement.GetProperty("manifests").EnumerateArray().Select(m => m.Clone()).ToArray();
    }

    [Fact]
    public Task Referrers_push_with_subject_answers_OCI_Subject() => Check(async () =>
    {
        var graph = await GraphAsync();
        foreach (var (_, put, subject) in graph.Pushes) Expect.HeaderEquals(put, "OCI-Subject", subject);
    });

    [Fact]
    public Task Referrers_of_an_unknown_digest_is_an_empty_index() => Check(async () =>
    {
        var graph = await GraphAsync();
        Assert.Empty(ParseReferrers(await GetAsync($"/v2/{graph.Repository}/referrers/{TestContent.UnknownDigest}")));
    });

    [Fact]
    public Task Referrers_list_every_manifest_with_that_subject_and_its_annotations() => Check(async () =>
    {
        var graph = await GraphAsync();
        var response = await GetAsync($"/v2/{graph.Repository}/referrers/{graph.Subject.Digest}");
        var manifests = ParseReferrers(response);
        Assert.True(manifests.Length == 5, $"expected 5 referrers: {response}");
        Assert.Equal(graph.Referrers.Keys.Order(), manifests.Select(m => m.GetProperty("digest").GetString()).Order());
        foreach (var descriptor in manifests)
        {
            var expected = graph.Referrers[descriptor.GetProperty("digest").GetString()!];
            var annotations = descriptor.GetProperty("annotations").EnumerateObject().ToArray();
            Assert.Single(annotations);
            Assert.Equal(AnnotationKey, annotations[0].Name);
            Assert.Equal(expected.Annotation, annotations[0].Value.GetString());
        }
    });

    /// <summary>Each descriptor's <c>artifactType</c> is the manifest's own, else its config media type.</summary>
    [Fact]
    public Task Referrers_descriptors_carry_artifactType_mediaType_and_size() => Check(async () =>
    {
        var graph = await GraphAsync();
        foreach (var descriptor in ParseReferrers(await GetAsync($"/v2/{graph.Repository}/referrers/{graph.Subject.Digest}")))
        {
            var expected = graph.Referrers[descriptor.GetProperty("digest").GetString()!];
            Assert.Equal(expected.ArtifactType, descriptor.GetProperty("artifactType").GetString());
            Assert.Equal(expected.MediaType, descriptor.GetProperty("mediaType").GetString());
            Assert.Equal(expected.Size, descriptor.GetProperty("size").GetInt64());
        }
    });

    [Fact]
    public Task Referrers_artifactType_filter_is_applied_and_announced() => Check(async () =>
    {
        var graph = await GraphAsync();
        var response = await GetAsync($"/v2/{graph.Repository}/referrers/{graph.Subject.Digest}?artifactType={Uri.EscapeDataString(ArtifactTypeA)}");
        var manifests = ParseReferrers(response);
        Expect.HeaderEquals(response, "OCI-Filters-Applied", "artifactType");
        Assert.True(manifests.Length == 2, $"expected the 2 referrers of type {ArtifactTypeA}: {response}");
        Assert.All(manifests, m => Assert.Equal(ArtifactTypeA, m.GetProperty("artifactType").GetString()));
    });

    [Fact]
    public Task Referrers_of_a_subject_never_pushed_list_its_referrer() => Check(async () =>
    {
        var graph = await GraphAsync();
        var manifests = ParseReferrers(await GetAsync($"/v2/{graph.Repository}/referrers/{graph.MissingSubject.Digest}"));
        Assert.Equal([graph.OrphanReferrer.Digest], manifests.Select(m => m.GetProperty("digest").GetString()!).ToArray());
    });
}
