using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Flotilla.Contracts.Registry;
using Flotilla.Tests.Gateway;
using Flotilla.Tests.Images;
using Flotilla.Tests.Support;
using Marten;
using Xunit;
using static Flotilla.Tests.Images.ArchiveFixtures;

namespace Flotilla.Tests.Registry.Auth;

/// <summary>A host of its own: these specs turn the registry from open to authenticated by adding users.</summary>
public sealed class AuthRegistryFlotilla : RunningFlotilla;

/// <summary>The token flow end to end: open on loopback until a user exists, then skopeo with and without rights.</summary>
public sealed class RegistryAuthSpec(AuthRegistryFlotilla flotilla) : IClassFixture<AuthRegistryFlotilla>, IDisposable
{
    private readonly TempStore _temp = new();

    public void Dispose() => _temp.Dispose();

    private string Ref(string repoAndTag) => $"docker://127.0.0.1:{flotilla.RegistryPort}/{repoAndTag}";

    private async Task<ProcessResult> SkopeoAsync(params string[] args)
    {
        var authFile = Path.Combine(_temp.Dir, "auth.json");
        Directory.CreateDirectory(_temp.Dir);
        if (!File.Exists(authFile)) await File.WriteAllTextAsync(authFile, """{"auths":{}}""");
        return await ProcessRunner.RunAsync("skopeo", ["--insecure-policy", .. args], TimeSpan.FromMinutes(2),
            new Dictionary<string, string> { ["REGISTRY_AUTH_FILE"] = authFile });
    }

    private static AuthenticationHeaderValue Basic(string user, string password) =>
        new("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}")));

    [SkippableFact]
    public async Task Open_until_a_user_exists_then_push_needs_a_user_with_the_right_and_every_refusal_is_recorded()
    {
        Skip.If(!File.Exists("/usr/bin/skopeo"), "skopeo is not installed");
        var archive = Path.Combine(_temp.Dir, "oci.tar");
        Directory.CreateDirectory(_temp.Dir);
        await File.WriteAllBytesAsync(archive, OciLayout(Busybox(), [new() { ["org.opencontainers.image.ref.name"] = "1" }]));

        // Zero config: loopback and no users, so the tutorial flow just works.
        using (var open = await flotilla.Registry.GetAsync("v2/"))
            Assert.Equal(HttpStatusCode.OK, open.StatusCode);
        var anonymousPush = await SkopeoAsync("copy", "--dest-tls-verify=false", $"oci-archive:{archive}:1", Ref("auth/open:1"));
        Assert.True(anonymousPush.ExitCode == 0, anonymousPush.ToString());

        using (var added = await flotilla.Native.PostAsJsonAsync("api/registry/users", new { name = "alice", password = "wonderland", rights = new[] { "pull", "push" } }))
            Assert.Equal(HttpStatusCode.Created, added.StatusCode);
        using (var added = await flotilla.Native.PostAsJsonAsync("api/registry/users", new { name = "bob", password = "builder-bob", rights = new[] { "pull" } }))
            Assert.Equal(HttpStatusCode.Created, added.StatusCode);
        using (var duplicate = await flotilla.Native.PostAsJsonAsync("api/registry/users", new { name = "bob", password = "another-password" }))
            Assert.Equal(HttpStatusCode.Conflict, duplicate.StatusCode);

        // Now a challenge, with the realm on this very listener.
        using (var challenged = await flotilla.Registry.GetAsync("v2/"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, challenged.StatusCode);
            Assert.Equal($"Bearer realm=\"http://127.0.0.1:{flotilla.RegistryPort}/token\",service=\"flotilla-registry\"",
                challenged.Headers.WwwAuthenticate.ToString());
            Assert.Equal("UNAUTHORIZED", JsonDocument.Parse(await challenged.Content.ReadAsStringAsync()).RootElement
                .GetProperty("errors")[0].GetProperty("code").GetString());
        }
        using (var bad = new HttpRequestMessage(HttpMethod.Get, "token?service=flotilla-registry") { Headers = { Authorization = Basic("alice", "nope") } })
        using (var refused = await flotilla.Registry.SendAsync(bad))
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);

        // The token flow by hand: partial grants are not errors, and the token opens exactly what it grants.
        string token;
        using (var request = new HttpRequestMessage(HttpMethod.Get, "token?service=flotilla-registry&scope=repository:auth/app:pull,push,delete")
        { Headers = { Authorization = Basic("alice", "wonderland") } })
        using (var granted = await flotilla.Registry.SendAsync(request))
        {
            Assert.Equal(HttpStatusCode.OK, granted.StatusCode);
            token = JsonDocument.Parse(await granted.Content.ReadAsStringAsync()).RootElement.GetProperty("token").GetString()!;
        }
        using (var request = new HttpRequestMessage(HttpMethod.Get, "v2/") { Headers = { Authorization = new("Bearer", token) } })
        using (var allowed = await flotilla.Registry.SendAsync(request))
            Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
        using (var request = new HttpRequestMessage(HttpMethod.Delete, "v2/auth/app/manifests/1") { Headers = { Authorization = new("Bearer", token) } })
        using (var notGranted = await flotilla.Registry.SendAsync(request))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, notGranted.StatusCode);
            Assert.Contains("error=\"insufficient_scope\"", notGranted.Headers.WwwAuthenticate.ToString());
        }

        // skopeo follows the same flow: alice may push, bob and anonymous may not; anyone may pull on loopback.
        var push = await SkopeoAsync("copy", "--dest-tls-verify=false", "--dest-creds", "alice:wonderland", $"oci-archive:{archive}:1", Ref("auth/app:1"));
        Assert.True(push.ExitCode == 0, push.ToString());
        var bobPush = await SkopeoAsync("copy", "--dest-tls-verify=false", "--dest-creds", "bob:builder-bob", $"oci-archive:{archive}:1", Ref("auth/app:2"));
        Assert.NotEqual(0, bobPush.ExitCode);
        var anonymous = await SkopeoAsync("copy", "--dest-tls-verify=false", $"oci-archive:{archive}:1", Ref("auth/app:3"));
        Assert.NotEqual(0, anonymous.ExitCode);
        var pull = await SkopeoAsync("inspect", "--tls-verify=false", Ref("auth/app:1"));
        Assert.True(pull.ExitCode == 0, pull.ToString());

        // The engine as the client: `docker login` runs the token flow against this registry.
        var login = await flotilla.RunDockerAsync("login", "-u", "alice", "-p", "wonderland", $"127.0.0.1:{flotilla.RegistryPort}");
        Assert.True(login.ExitCode == 0 && login.Stdout.Contains("Login Succeeded"), login.ToString());
        var wrong = await flotilla.RunDockerAsync("login", "-u", "alice", "-p", "wrong", $"127.0.0.1:{flotilla.RegistryPort}");
        Assert.NotEqual(0, wrong.ExitCode);

        using var store = flotilla.OpenStore();
        await using var session = store.QuerySession();
        var pushed = await session.Events.FetchStreamAsync("repository-auth/app");
        Assert.Contains(pushed, e => e.Data is ManifestPushed && e.UserName == "alice");
        Assert.DoesNotContain(pushed, e => e.UserName is "bob" or "anonymous");
        // Bad logins are RegistryAccessDenied; a token request's refused scopes are one RegistryScopesDenied, flattened here.
        var denials = (await session.Events.FetchStreamAsync(RegistryUserStreams.Access)).Select(e => e.Data)
            .SelectMany(e => e switch
            {
                RegistryAccessDenied d => [d],
                RegistryScopesDenied m => m.Scopes.Select(s => new RegistryAccessDenied(m.User, s.Resource, s.Actions, m.Reason, m.RemoteAddress, m.At)),
                _ => Array.Empty<RegistryAccessDenied>(),
            }).ToList();
        Assert.Contains(denials, d => d is { User: "alice", Reason: "invalid username or password" });
        Assert.Contains(denials, d => d.User == "bob" && d.Actions.Contains("push") && d.Resource == "repository:auth/app");
        Assert.Contains(denials, d => d.User == "anonymous" && d.Actions.Contains("push"));
    }
}
