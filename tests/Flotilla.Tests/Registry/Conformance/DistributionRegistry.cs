namespace Flotilla.Tests.Registry.Conformance;

/// <summary>
/// The reference: Debian's CNCF distribution 2.8.2 (<c>/usr/bin/docker-registry</c>) on a free loopback port with
/// filesystem storage in a temp dir and deletes enabled. A check that fails here and is not a known gap is a wrong check.
/// </summary>
public sealed class DistributionRegistry : RegistryUnderTest
{
    private Support.DistributionProcess? _registry;

    public override string Name => "distribution 2.8.2";

    /// <summary>What distribution 2.8.2 really gets wrong, each seen failing against it (most were fixed in v3).</summary>
    public override IReadOnlyDictionary<string, string> KnownGaps { get; } = new Dictionary<string, string>
    {
        // GET manifests/sha256:totallywrong → 500 UNKNOWN (it looks the malformed digest up as a tag path on disk).
        [nameof(PullChecks<DistributionRegistry>.Error_body_for_a_malformed_digest_is_OCI_JSON)] = "500 UNKNOWN for a malformed digest",

        // A PATCH whose Content-Range does not start at the session's offset is appended anyway (202).
        [nameof(PushChecks<DistributionRegistry>.Chunked_out_of_order_chunk_is_416)] = "accepts an out-of-order chunk with 202",
        // Resending a chunk to the previous Location: its _state token is stale → 404 BLOB_UPLOAD_INVALID, not 416.
        [nameof(PushChecks<DistributionRegistry>.Chunked_retried_chunk_is_416)] = "404 BLOB_UPLOAD_INVALID instead of 416",

        // tags/list comes in storage (readdir) order and ignores n and last; no Link header.
        [nameof(ContentDiscoveryChecks<DistributionRegistry>.Tags_list_is_in_lexical_order)] = "tags in readdir order",
        [nameof(ContentDiscoveryChecks<DistributionRegistry>.Tags_list_n_returns_exactly_n)] = "n ignored on tags/list",
        [nameof(ContentDiscoveryChecks<DistributionRegistry>.Tags_list_last_starts_after_that_tag)] = "last ignored on tags/list",
        [nameof(ContentDiscoveryChecks<DistributionRegistry>.Tags_list_pages_link_to_the_next_page)] = "no tags/list pagination or Link",

        // No referrers API at all (plain-text 404 from the router), and no OCI-Subject on pushes with a subject.
        [nameof(ContentDiscoveryChecks<DistributionRegistry>.Referrers_push_with_subject_answers_OCI_Subject)] = "no OCI-Subject header",
        [nameof(ContentDiscoveryChecks<DistributionRegistry>.Referrers_of_an_unknown_digest_is_an_empty_index)] = "no referrers API",
        [nameof(ContentDiscoveryChecks<DistributionRegistry>.Referrers_list_every_manifest_with_that_subject_and_its_annotations)] = "no referrers API",
        [nameof(ContentDiscoveryChecks<DistributionRegistry>.Referrers_descriptors_carry_artifactType_mediaType_and_size)] = "no referrers API",
        [nameof(ContentDiscoveryChecks<DistributionRegistry>.Referrers_artifactType_filter_is_applied_and_announced)] = "no referrers API / OCI-Filters-Applied",
        [nameof(ContentDiscoveryChecks<DistributionRegistry>.Referrers_of_a_subject_never_pushed_list_its_referrer)] = "no referrers API",

        // DELETE manifests/<tag> → 400 DIGEST_INVALID: 2.8 deletes by digest only (the suite would want UNSUPPORTED).
        [nameof(ContentManagementChecks<DistributionRegistry>.Manifest_DELETE_by_tag_is_202_and_keeps_the_manifest)] = "no tag deletion (400 DIGEST_INVALID)",

        // gorilla/mux cleans paths with a 301 (to /x/... and /v2/a/b/...) and answers names outside the grammar
        // with a text/plain "404 page not found", not an OCI error body.
        [$"{nameof(HardeningChecks<DistributionRegistry>.Invalid_repository_names_are_refused)}(../x)"] = "301 to the cleaned path",
        [$"{nameof(HardeningChecks<DistributionRegistry>.Invalid_repository_names_are_refused)}(a//b)"] = "301 to the cleaned path",
        [$"{nameof(HardeningChecks<DistributionRegistry>.Invalid_repository_names_are_refused)}(A/B)"] = "text/plain 404, no NAME_INVALID",
    };

    public override async Task InitializeAsync()
    {
        _registry = await Support.DistributionProcess.StartAsync();
        BaseUri = new Uri($"http://{_registry.Address}/");
        if (!await WaitUntilAnsweringAsync(TimeSpan.FromSeconds(15)))
            throw new InvalidOperationException($"distribution did not answer GET /v2/ on {_registry.Address}:\n{_registry.RecentLog}");
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        if (_registry is not null) await _registry.DisposeAsync();
    }
}
