using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Flotilla.Contracts.Registry;
using Flotilla.Tests.Gateway;
using Marten;
using Xunit;

namespace Flotilla.Tests.Registry.Auth;

/// <summary>Repository <c>secret/a</c> holds a blob (pushed while the registry was open); then users exist.</summary>
public sealed class MountRegistryFlotilla : RunningFlotilla, IAsyncLifetime
{
    public string SecretBlob { get; private set; } = "";

    async Task IAsyncLifetime.InitializeAsync()
    {
        await InitializeAsync();
        SecretBlob = await Registry.PushBlobAsync("secret/a", RegistryHttp.RandomBytes(4096));
        foreach (var (name, rights) in new[] { ("pusher", new[] { "push" }), ("builder", new[] { "pull", "push" }) })
        {
            using var added = await Native.PostAsJsonAsync("api/registry/users", new { name, password = name + "-password", rights });
            Assert.Equal(HttpStatusCode.Created, added.StatusCode);
        }
    }

    public async Task<string> TokenAsync(string user, params string[] scopes)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get,
            "token?service=flotilla-registry&" + string.Join("&", scopes.Select(s => "scope=" + s)))
        {
            Headers = { Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{user}-password"))) },
        };
        using var response = await Registry.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("token").GetString()!;
    }
}

/// <summary>Issue 13, item 15 (registry parts): a mount reads its source; the realm is not the client's to choose.</summary>
public sealed class RegistryMountAndRealmSpec(MountRegistryFlotilla flotilla) : IClassFixture<MountRegistryFlotilla>
{
    private async Task<HttpResponseMessage> MountAsync(string token, string target)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"v2/{target}/blobs/uploads/?mount={flotilla.SecretBlob}&from=secret/a")
        {
            Headers = { Authorization = new AuthenticationHeaderValue("Bearer", token) },
        };
        return await flotilla.Registry.SendAsync(request);
    }

    [Fact]
    public async Task A_user_without_pull_on_the_source_cannot_mount_its_blob_and_gets_an_upload_instead()
    {
        var token = await flotilla.TokenAsync("pusher", "repository:mine/b:push", "repository:secret/a:pull");
        using var refused = await MountAsync(token, "mine/b");
        Assert.Equal(HttpStatusCode.Accepted, refused.StatusCode); // an upload session, not the blob
        using (var probe = new HttpRequestMessage(HttpMethod.Head, $"v2/mine/b/blobs/{flotilla.SecretBlob}")
        { Headers = { Authorization = new AuthenticationHeaderValue("Bearer", await flotilla.TokenAsync("builder", "repository:mine/b:pull")) } })
        using (var head = await flotilla.Registry.SendAsync(probe))
            Assert.Equal(HttpStatusCode.NotFound, head.StatusCode);

        using var store = flotilla.OpenStore();
        await using var session = store.QuerySession();
        var events = (await session.Events.FetchStreamAsync(RegistryUserStreams.Access)).Select(e => e.Data).ToList();
        Assert.Contains(events, e => e is RegistryAccessDenied { User: "pusher", Resource: "repository:secret/a" } d && d.Actions.Contains("pull"));

        // With pull on the source the same mount is made.
        var builder = await flotilla.TokenAsync("builder", "repository:mine/c:pull,push", "repository:secret/a:pull");
        using var mounted = await MountAsync(builder, "mine/c");
        Assert.Equal(HttpStatusCode.Created, mounted.StatusCode);
    }

    [Fact]
    public async Task A_forged_host_header_does_not_move_the_token_realm()
    {
        // A Host the client listener accepts (*.localhost), so the realm, not the Host guard, is what is checked.
        using var request = new HttpRequestMessage(HttpMethod.Get, "v2/");
        request.Headers.Host = "attacker.localhost:443";
        using var challenged = await flotilla.Registry.SendAsync(request);
        Assert.Equal(HttpStatusCode.Unauthorized, challenged.StatusCode);
        var challenge = challenged.Headers.WwwAuthenticate.ToString();
        Assert.Contains($"realm=\"http://127.0.0.1:{flotilla.RegistryPort}/token\"", challenge);
        Assert.DoesNotContain("attacker", challenge);
    }
}
