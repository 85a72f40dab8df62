using System.Net;
using System.Net.Http.Headers;
using System.Security.Claims;
using System.Security.Cryptography;
using System.Security.Principal;
using System.Text;
using System.Text.Json;
using Flotilla.Tests.Gateway;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Flotilla.Tests.Registry;

[CollectionDefinition("registry-host")]
public sealed class RegistryHostCollection : ICollectionFixture<RegistryFlotilla>;

/// <summary>
/// The all-in-one host for registry specs. Stands in for the lead's auth middleware: a request with
/// <c>X-Test-User: alice</c> runs as the authenticated user alice, so events can be checked for their user.
/// </summary>
public sealed class RegistryFlotilla : RunningFlotilla
{
    public const string TestUserHeader = "X-Test-User";

    protected override void ConfigureServices(IServiceCollection services) =>
        services.AddSingleton<IStartupFilter, TestUserFilter>();

    public string Url(string path) => $"http://127.0.0.1:{RegistryPort}{path}";

    private sealed class TestUserFilter : IStartupFilter
    {
        public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
        {
            app.Use(async (context, nextMiddleware) =>
            {
                if (context.Request.Headers[TestUserHeader].ToString() is { Length: > 0 } user)
                    context.User = new ClaimsPrincipal(new GenericIdentity(user, "test"));
                await nextMiddleware(context);
            });
            next(app);
        };
    }
}

/// <summary>Small registry client for specs: blob and manifest pushes over plain HTTP.</summary>
public static class RegistryHttp
{
    public const string OciManifest = "application/vnd.oci.image.manifest.v1+json";
    public const string OciIndex = "application/vnd.oci.image.index.v1+json";

    public static string DigestOf(byte[] data) => "sha256:" + Convert.ToHexStringLower(SHA256.HashData(data));

    public static byte[] RandomBytes(int size)
    {
        var data = new byte[size];
        Random.Shared.NextBytes(data);
        return data;
    }

    /// <summary>POST a session, then PUT the whole blob (a monolithic upload).</summary>
    public static async Task<string> PushBlobAsync(this HttpClient client, string repository, byte[] data, string? user = null)
    {
        using var post = new HttpRequestMessage(HttpMethod.Post, $"v2/{repository}/blobs/uploads/");
        if (user is not null) post.Headers.Add(RegistryFlotilla.TestUserHeader, user);
        using var started = await client.SendAsync(post);
        Assert.Equal(HttpStatusCode.Accepted, started.StatusCode);
        var digest = DigestOf(data);
        using var put = new HttpRequestMessage(HttpMethod.Put, $"{started.Headers.Location}?digest={digest}") { Content = Octets(data) };
        if (user is not null) put.Headers.Add(RegistryFlotilla.TestUserHeader, user);
        using var done = await client.SendAsync(put);
        Assert.True(done.StatusCode == HttpStatusCode.Created, await done.Content.ReadAsStringAsync());
        Assert.Equal(digest, done.Headers.GetValues("Docker-Content-Digest").Single());
        return digest;
    }

    public static ByteArrayContent Octets(byte[] data, int offset = 0, int? count = null)
    {
        var content = new ByteArrayContent(data, offset, count ?? data.Length - offset);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        return content;
    }

    public static string ImageManifest(string configDigest, long configSize, IEnumerable<(string Digest, long Size)> layers,
        string? subject = null, string? artifactType = null, string? annotation = null)
    {
        var manifest = new Dictionary<string, object?>
        {
            ["schemaVersion"] = 2,
            ["mediaType"] = OciManifest,
            ["config"] = new { mediaType = "application/vnd.oci.image.config.v1+json", digest = configDigest, size = configSize },
            ["layers"] = layers.Select(l => new { mediaType = "application/vnd.oci.image.layer.v1.tar", digest = l.Digest, size = l.Size }).ToList(),
        };
        if (artifactType is not null) manifest["artifactType"] = artifactType;
        if (subject is not null) manifest["subject"] = new { mediaType = OciManifest, digest = subject, size = 100 };
        if (annotation is not null) manifest["annotations"] = new Dictionary<string, string> { ["org.example.note"] = annotation };
        return JsonSerializer.Serialize(manifest);
    }

    public static async Task<HttpResponseMessage> PutManifestAsync(this HttpClient client, string repository, string reference, string json,
        string mediaType = OciManifest, string? user = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Put, $"v2/{repository}/manifests/{reference}")
        {
            Content = new ByteArrayContent(Encoding.UTF8.GetBytes(json)),
        };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue(mediaType);
        if (user is not null) request.Headers.Add(RegistryFlotilla.TestUserHeader, user);
        return await client.SendAsync(request);
    }

    /// <summary>Config + one layer + manifest under <paramref name="tag"/>; returns the manifest digest.</summary>
    public static async Task<(string Manifest, string Config, string Layer)> PushImageAsync(this HttpClient client, string repository, string tag,
        int layerSize = 1000, string? user = null)
    {
        var config = Encoding.UTF8.GetBytes($$"""{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"n":"{{Guid.NewGuid()}}"}""");
        var layer = RandomBytes(layerSize);
        var configDigest = await client.PushBlobAsync(repository, config, user);
        var layerDigest = await client.PushBlobAsync(repository, layer, user);
        var json = ImageManifest(configDigest, config.Length, [(layerDigest, layer.Length)]);
        using var response = await client.PutManifestAsync(repository, tag, json, user: user);
        Assert.True(response.StatusCode == HttpStatusCode.Created, await response.Content.ReadAsStringAsync());
        return (response.Headers.GetValues("Docker-Content-Digest").Single(), configDigest, layerDigest);
    }

    /// <summary>The first error of a registry error body.</summary>
    public static async Task<(string Code, string Message)> ErrorOfAsync(HttpResponseMessage response)
    {
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        var error = body.GetProperty("errors")[0];
        return (error.GetProperty("code").GetString()!, error.GetProperty("message").GetString()!);
    }
}
