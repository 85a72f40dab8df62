using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Flotilla.Contracts.Registry;
using Flotilla.Gateway.Registry;
using Flotilla.Tests.Gateway;
using Marten;
using Xunit;

namespace Flotilla.Tests.Registry.Auth;

/// <summary>A registry with users (so not open) and one image, <c>intr/app:latest</c>, pushed while it was open.</summary>
public sealed class IntruderRegistryFlotilla : RunningFlotilla, IAsyncLifetime
{
    public const string Repository = "intr/app";
    public const string PullerPassword = "puller-password";
    public string AnonymousToken { get; private set; } = "";
    public string PullToken { get; private set; } = "";

    async Task IAsyncLifetime.InitializeAsync()
    {
        await InitializeAsync();
        await Registry.PushImageAsync(Repository, "latest");
        using (var added = await Native.PostAsJsonAsync("api/registry/users", new { name = "admin", password = "admin-password", rights = new[] { "pull", "push", "delete" } }))
            Assert.Equal(HttpStatusCode.Created, added.StatusCode);
        using (var added = await Native.PostAsJsonAsync("api/registry/users", new { name = "puller", password = PullerPassword, rights = new[] { "pull" } }))
            Assert.Equal(HttpStatusCode.Created, added.StatusCode);
        AnonymousToken = await TokenAsync(null);
        PullToken = await TokenAsync(("puller", PullerPassword));
    }

    /// <summary>A token asking for everything on the repository; the realm grants what the caller may have.</summary>
    public async Task<string> TokenAsync((string User, string Password)? credentials, string? scope = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get,
            $"token?service=flotilla-registry&scope={scope ?? $"repository:{Repository}:pull,push,delete"}");
        if (credentials is { } c)
            request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{c.User}:{c.Password}")));
        using var response = await Registry.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("token").GetString()!;
    }

    /// <summary>
    /// One request with the target exactly as given (HttpClient would normalise dot segments and escapes, and an
    /// intruder does not). Returns the status code.
    /// </summary>
    public async Task<int> RawAsync(string method, string target, string? bearer, string? hostHeader = null)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, RegistryPort);
        await using var stream = tcp.GetStream();
        var head = new StringBuilder($"{method} {target} HTTP/1.1\r\nHost: {hostHeader ?? $"127.0.0.1:{RegistryPort}"}\r\n");
        if (bearer is not null) head.Append($"Authorization: Bearer {bearer}\r\n");
        head.Append("Content-Type: application/octet-stream\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head.ToString()));
        using var reader = new StreamReader(stream, Encoding.ASCII);
        var status = await reader.ReadLineAsync() ?? "";
        return int.Parse(status.Split(' ')[1]);
    }

    public async Task<long> AccessStreamVersionAsync()
    {
        using var store = OpenStore();
        await using var session = store.QuerySession();
        return (await session.Events.FetchStreamStateAsync(RegistryUserStreams.Access))?.Version ?? 0;
    }
}

/// <summary>
/// Issue 13, item 1: routing was case-insensitive while authorization matched <c>^/v2/</c> case-sensitively and let
/// any valid token through otherwise, so <c>POST /V2/&lt;repo&gt;/blobs/uploads/</c> with the anonymous token got 202.
/// Every odd spelling of a path, with every kind of caller, must now be refused and recorded.
/// </summary>
public sealed class RegistryPathIntruderSpec(IntruderRegistryFlotilla flotilla) : IClassFixture<IntruderRegistryFlotilla>
{
    private const string Upload = "6f1c7a52-3b0e-4c0e-9a43-1a2b3c4d5e6f";

    /// <summary>For each method, a route it has.</summary>
    private static readonly Dictionary<string, string> Routes = new()
    {
        ["POST"] = "/v2/intr/app/blobs/uploads/",
        ["PUT"] = "/v2/intr/app/manifests/latest",
        ["PATCH"] = "/v2/intr/app/blobs/uploads/" + Upload,
        ["DELETE"] = "/v2/intr/app/manifests/latest",
        ["GET"] = "/v2/intr/app/tags/list",
    };

    /// <summary>Ways to spell the same request that a careless check and a lenient router read differently.</summary>
    private static readonly (string Label, Func<string, string> Spell)[] Spellings =
    [
        ("upper-case V2", t => "/V2" + t[3..]),
        ("upper-case route word", t => t.Replace("/blobs/", "/BLOBS/").Replace("/manifests/", "/Manifests/").Replace("/tags/", "/TAGS/")),
        ("escaped v2", t => "/%76%32" + t[3..]),
        ("escaped V2", t => "/%56%32" + t[3..]),
        ("escaped slash in the name", t => t.Replace("intr/app", "intr%2Fapp")),
        ("escaped dot-dot", t => "/v2/%2e%2e" + t),
        ("dot-dot", t => "/v2/.." + t),
        ("dot-dot inside the name", t => t.Replace("intr/app", "intr/x/../app")),
        ("dot segment", t => t.Replace("/intr/", "/./intr/")),
        ("double slash before the name", t => t.Replace("/v2/", "/v2//")),
        ("double slash inside the name", t => t.Replace("intr/app", "intr//app")),
        ("trailing slash", t => t + "/"),
        ("upper-case name", t => t.Replace("intr/app", "INTR/app")),
        ("escaped letter in the name", t => t.Replace("intr/app", "intr/%61pp")),
    ];

    public static TheoryData<string, string, string> Cases()
    {
        var data = new TheoryData<string, string, string>();
        foreach (var (method, route) in Routes)
            foreach (var (_, spell) in Spellings)
                foreach (var caller in new[] { "anonymous token", "pull-only token", "no token" })
                    data.Add(method, spell(route), caller);
        return data;
    }

    private string? Bearer(string caller) => caller switch
    {
        "anonymous token" => flotilla.AnonymousToken,
        "pull-only token" => flotilla.PullToken,
        _ => null,
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task An_odd_spelling_of_a_path_is_refused_and_recorded(string method, string target, string caller)
    {
        var before = await flotilla.AccessStreamVersionAsync();
        var status = await flotilla.RawAsync(method, target, Bearer(caller));
        Assert.True(status is >= 400 and < 500, $"{method} {target} with {caller}: {status}");
        Assert.True(await flotilla.AccessStreamVersionAsync() > before, $"{method} {target} with {caller}: {status} but no denial recorded");
    }

    [Theory]
    [InlineData("POST", "/v2/intr/app/blobs/uploads/")]
    [InlineData("PATCH", "/v2/intr/app/blobs/uploads/" + Upload)]
    [InlineData("PUT", "/v2/intr/app/manifests/latest")]
    [InlineData("DELETE", "/v2/intr/app/manifests/latest")]
    [InlineData("GET", "/v2/")]
    public async Task The_canonical_spelling_needs_the_right_scope(string method, string target)
    {
        foreach (var caller in new[] { "anonymous token", "pull-only token" })
        {
            var before = await flotilla.AccessStreamVersionAsync();
            var status = await flotilla.RawAsync(method, target, Bearer(caller));
            if (method == "GET")
            {
                // "Any valid token" opens only the base.
                Assert.Equal(200, status);
                continue;
            }
            Assert.Equal(401, status);
            Assert.True(await flotilla.AccessStreamVersionAsync() > before, $"{method} {target} with {caller}: no denial recorded");
        }
    }

    [Fact]
    public async Task Other_methods_on_the_base_are_refused_even_with_a_token()
    {
        foreach (var method in new[] { "POST", "PUT", "PATCH", "DELETE" })
            Assert.Equal(405, await flotilla.RawAsync(method, "/v2/", flotilla.AnonymousToken));
    }

    [Fact]
    public async Task The_image_is_still_there_and_an_escaped_colon_in_a_digest_is_served()
    {
        using var tags = await flotilla.Registry.SendAsync(new HttpRequestMessage(HttpMethod.Get, "v2/intr/app/tags/list")
        { Headers = { Authorization = new AuthenticationHeaderValue("Bearer", flotilla.PullToken) } });
        Assert.Equal(HttpStatusCode.OK, tags.StatusCode);
        Assert.Contains("latest", await tags.Content.ReadAsStringAsync());
        using var head = await flotilla.Registry.SendAsync(new HttpRequestMessage(HttpMethod.Head, "v2/intr/app/manifests/latest")
        { Headers = { Authorization = new AuthenticationHeaderValue("Bearer", flotilla.PullToken) } });
        var digest = head.Headers.GetValues(RegistryApi.DigestHeader).Single();
        Assert.Equal(200, await flotilla.RawAsync("GET", $"/v2/intr/app/manifests/{digest.Replace(":", "%3A")}", flotilla.PullToken));
    }
}
