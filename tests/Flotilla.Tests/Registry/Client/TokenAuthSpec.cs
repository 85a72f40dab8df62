using System.Net.Http.Headers;
using System.Text;
using Flotilla.NodeRuntime.Distribution;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Storage;
using Flotilla.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Xunit;

namespace Flotilla.Tests.Registry.Client;

/// <summary>
/// The bearer-token flow (Docker Hub's) against a small fake registry with its own token endpoint:
/// 401 challenge → token with basic credentials and the request's scope → retried with the token, cached.
/// </summary>
public sealed class TokenAuthSpec : IAsyncLifetime
{
    private const string Manifest = """{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}""";
    private WebApplication _app = null!;
    private readonly int _port = FreePort.Next();
    private readonly List<string> _tokenRequests = [];

    private string Domain => $"127.0.0.1:{_port}";

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls($"http://127.0.0.1:{_port}");
        _app = builder.Build();
        var expected = "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes("alice:wonder"));
        _app.MapGet("/token", (HttpContext c) =>
        {
            lock (_tokenRequests) _tokenRequests.Add(c.Request.QueryString.Value ?? "");
            return c.Request.Headers.Authorization.ToString() == expected
                ? Results.Json(new { token = "tok-" + c.Request.Query["scope"], expires_in = 300 })
                : Results.Json(new { details = "incorrect username or password" }, statusCode: 401);
        });
        IResult Challenge(HttpContext c, string? scope)
        {
            c.Response.Headers.WWWAuthenticate = $"Bearer realm=\"http://{Domain}/token\",service=\"fake\"" + (scope is null ? "" : $",scope=\"{scope}\"");
            return Results.Json(new { errors = new[] { new { code = "UNAUTHORIZED", message = "authentication required" } } }, statusCode: 401);
        }
        _app.MapGet("/v2/", (HttpContext c) => c.Request.Headers.Authorization.ToString().StartsWith("Bearer tok-") ? Results.Json(new { }) : Challenge(c, null));
        _app.MapGet("/v2/{a}/{b}/manifests/{reference}", (HttpContext c, string a, string b) =>
            c.Request.Headers.Authorization.ToString() == $"Bearer tok-repository:{a}/{b}:pull"
                ? Results.Text(Manifest, MediaTypes.OciManifest)
                : Challenge(c, $"repository:{a}/{b}:pull"));
        await _app.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    [Fact]
    public async Task Login_fetches_a_token_with_the_credentials_and_no_scope()
    {
        using var client = new RegistryClient();
        await client.LoginAsync(Domain, new RegistryCredentials("alice", "wonder"));
        Assert.Contains("account=alice", Assert.Single(_tokenRequests));
        Assert.DoesNotContain("scope=", _tokenRequests[0]);

        var refused = await Assert.ThrowsAsync<RegistryException>(() => client.LoginAsync(Domain, new RegistryCredentials("alice", "nope")));
        Assert.Equal(401, refused.Status);
        Assert.StartsWith("unauthorized", refused.Message);
    }

    [Fact]
    public async Task Requests_carry_a_token_for_their_scope_fetched_once()
    {
        using var client = new RegistryClient();
        var session = await client.OpenAsync(Domain, new RegistryCredentials("alice", "wonder"));
        var first = await session.GetManifestAsync("team/app", "latest");
        var second = await session.GetManifestAsync("team/app", "v2");
        Assert.Equal(Digest.Of(Encoding.UTF8.GetBytes(Manifest)), first.Digest);
        Assert.Equal(MediaTypes.OciManifest, second.MediaType);
        var request = Assert.Single(_tokenRequests);
        Assert.Contains("scope=repository%3Ateam%2Fapp%3Apull", request);
        Assert.Contains("service=fake", request);

        var anonymous = await client.OpenAsync(Domain, null);
        var denied = await Assert.ThrowsAsync<RegistryException>(() => anonymous.GetManifestAsync("team/app", "latest"));
        Assert.Equal(401, denied.Status);
    }
}
