using System.Runtime.CompilerServices;
using System.Text.Json;
using Xunit;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace Flotilla.Tests.Registry.Conformance;

/// <summary>
/// Base of every workflow's checks. A check is a test method whose name is its id; it runs against one
/// <typeparamref name="TRegistry"/> (the derived class per target says which), and must pass there unless the id is
/// one of the registry's known gaps, in which case it must fail.
/// </summary>
public abstract class ConformanceChecks<TRegistry>(TRegistry registry, ITestOutputHelper output) where TRegistry : RegistryUnderTest
{
    protected TRegistry Registry => registry;
    protected RegistryWire Wire => registry.Wire;

    protected async Task Check(Func<Task> body, string? variant = null, [CallerMemberName] string method = "")
    {
        var id = variant is null ? method : $"{method}({variant})";
        if (registry.Unavailable is { } why) Assert.Fail($"{registry.Name}: {why}");
        if (!registry.KnownGaps.TryGetValue(id, out var gap))
        {
            await body();
            return;
        }
        try
        {
            await body();
        }
        catch (Exception e) when (e is XunitException or JsonException)
        {
            output.WriteLine($"Known gap of {registry.Name} ({gap}); the check failed as expected:\n{e.Message}");
            return;
        }
        Assert.Fail($"'{id}' is a known gap of {registry.Name} ({gap}) but the check passes now: take it off the list.");
    }

    /// <summary>POST an upload session; returns its Location.</summary>
    protected async Task<string> StartUploadAsync(string repository)
    {
        var started = await Wire.SendAsync(HttpMethod.Post, $"/v2/{repository}/blobs/uploads/");
        Expect.Status(started, 202);
        return Expect.Header(started, "Location");
    }

    /// <summary>Monolithic upload: POST a session, PUT the whole blob with its digest → 201.</summary>
    protected async Task<RegistryResponse> PushBlobAsync(string repository, Content blob)
    {
        var location = await StartUploadAsync(repository);
        var put = await Wire.SendAsync(HttpMethod.Put, RegistryWire.WithQuery(location, "digest", blob.Digest), blob.Bytes, TestContent.Octets);
        Expect.Status(put, 201);
        return put;
    }

    protected async Task<RegistryResponse> PushManifestAsync(string repository, string reference, Content manifest)
    {
        var put = await Wire.SendAsync(HttpMethod.Put, $"/v2/{repository}/manifests/{reference}", manifest.Bytes, manifest.MediaType);
        Expect.Status(put, 201);
        return put;
    }

    /// <summary>Config + layer + manifest pushed under <paramref name="tags"/> (or by digest when none).</summary>
    protected async Task<Content> PushImageAsync(string repository, params string[] tags)
    {
        var config = TestContent.Config();
        var layer = TestContent.RandomBlob(64);
        await PushBlobAsync(repository, config);
        await PushBlobAsync(repository, layer);
        var manifest = TestContent.ImageManifest(config, [layer]);
        if (tags.Length == 0) await PushManifestAsync(repository, manifest.Digest, manifest);
        foreach (var tag in tags) await PushManifestAsync(repository, tag, manifest);
        return manifest;
    }

    protected Task<RegistryResponse> GetAsync(string path, IReadOnlyDictionary<string, string>? headers = null) =>
        Wire.SendAsync(HttpMethod.Get, path, headers: headers);

    protected Task<RegistryResponse> HeadAsync(string path) => Wire.SendAsync(HttpMethod.Head, path);

    protected static readonly IReadOnlyDictionary<string, string> AcceptOci = new Dictionary<string, string>
    {
        ["Accept"] = $"{TestContent.OciManifest}, {TestContent.OciIndex}",
    };
}

/// <summary>Assertions that quote the whole exchange when they fail.</summary>
public static class Expect
{
    /// <summary>The 14 error codes of the OCI spec plus the two the v1.1.1 suite also accepts.</summary>
    public static readonly IReadOnlySet<string> OciErrorCodes = new HashSet<string>
    {
        "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN",
        "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "MANIFEST_UNVERIFIED", "NAME_INVALID", "NAME_UNKNOWN", "SIZE_INVALID",
        "TAG_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS",
    };

    public static void Status(RegistryResponse response, params int[] expected) =>
        Assert.True(expected.Contains(response.Status), $"expected {string.Join(" or ", expected)}: {response}");

    /// <summary>A non-empty header; returns its value.</summary>
    public static string Header(RegistryResponse response, string name)
    {
        var value = response.Header(name);
        Assert.False(string.IsNullOrEmpty(value), $"expected a {name} header: {response}");
        return value!;
    }

    public static void HeaderEquals(RegistryResponse response, string name, string expected) =>
        Assert.True(response.Header(name) == expected, $"expected {name}: {expected}: {response}");

    /// <summary>Optional header that, when present, must have this value (the suite's Docker-Content-Digest rule).</summary>
    public static void HeaderIfPresent(RegistryResponse response, string name, string expected)
    {
        if (response.Header(name) is { } value) Assert.True(value == expected, $"expected {name}: {expected}: {response}");
    }

    public static void ErrorCode(RegistryResponse response, params string[] codes) =>
        Assert.True(response.ErrorCode is { } code && codes.Contains(code),
            $"expected an OCI error body with code {string.Join(" or ", codes)}: {response}");

    public static void Body(RegistryResponse response, Content content) =>
        Assert.True(response.Body.AsSpan().SequenceEqual(content.Bytes),
            $"expected the {content.Size} bytes of {content.Digest}, got {response.Body.Length} bytes ({TestContent.Sha256(response.Body)}): {response}");
}
