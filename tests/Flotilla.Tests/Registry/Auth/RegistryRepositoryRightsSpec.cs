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

/// <summary>A host of its own: these specs add users, which closes the registry.</summary>
public sealed class RepositoryRightsRegistryFlotilla : RunningFlotilla;

/// <summary>Per-repository rights end to end: the token realm grants by pattern, and skopeo's push follows.</summary>
public sealed class RegistryRepositoryRightsSpec(RepositoryRightsRegistryFlotilla flotilla) : IClassFixture<RepositoryRightsRegistryFlotilla>, IDisposable
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

    private Task<ProcessResult> FlotillaCliAsync(params string[] args) =>
        ProcessRunner.RunAsync("dotnet", [typeof(Flotilla.Cli.Commands.RegistryUserCommand).Assembly.Location, .. args, "--http", $"127.0.0.1:{flotilla.HttpPort}"],
            TimeSpan.FromSeconds(60), flotilla.CliEnvironment);

    private static AuthenticationHeaderValue Basic(string user, string password) =>
        new("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}")));

    [SkippableFact]
    public async Task A_user_with_push_on_team_star_pushes_team_app_not_other_app_and_the_refusal_is_recorded()
    {
        Skip.If(!File.Exists("/usr/bin/skopeo"), "skopeo is not installed");
        var archive = Path.Combine(_temp.Dir, "oci.tar");
        Directory.CreateDirectory(_temp.Dir);
        await File.WriteAllBytesAsync(archive, OciLayout(Busybox(), [new() { ["org.opencontainers.image.ref.name"] = "1" }]));

        // By the CLI, as an operator would.
        var add = await FlotillaCliAsync("registry", "user", "add", "teamer", "--rights", "pull,push", "--repository", "team/*", "--password", "teamer-password");
        Assert.True(add.ExitCode == 0 && add.Stdout.Contains("Added registry user teamer (pull,push on team/*)"), add.ToString());
        // No repositories field: every repository, as before.
        using (var added = await flotilla.Native.PostAsJsonAsync("api/registry/users", new { name = "allround", password = "allround-password", rights = new[] { "pull", "push" } }))
            Assert.Equal(HttpStatusCode.Created, added.StatusCode);
        using (var bad = await flotilla.Native.PostAsJsonAsync("api/registry/users",
                   new { name = "badpattern", password = "badpattern-password", repositories = new[] { "team/" } }))
        {
            Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
            Assert.Contains("invalid repository pattern 'team/'", JsonDocument.Parse(await bad.Content.ReadAsStringAsync()).RootElement.GetProperty("message").GetString());
        }
        using (var listed = await flotilla.Native.GetAsync("api/registry/users"))
        {
            var users = JsonDocument.Parse(await listed.Content.ReadAsStringAsync()).RootElement.EnumerateArray()
                .ToDictionary(u => u.GetProperty("name").GetString()!, u => u.GetProperty("repositories").EnumerateArray().Select(r => r.GetString()).ToList());
            Assert.Equal(["team/*"], users["teamer"]);
            Assert.Equal(["*"], users["allround"]);
        }
        var ls = await FlotillaCliAsync("registry", "user", "ls");
        Assert.True(ls.ExitCode == 0 && ls.Stdout.Contains("REPOSITORIES") && ls.Stdout.Contains("team/*"), ls.ToString());

        // The token realm by hand: one request, two scopes; only team/app is granted.
        using (var request = new HttpRequestMessage(HttpMethod.Get,
                   "token?service=flotilla-registry&scope=repository:team/app:pull,push&scope=repository:other/app:pull,push")
        { Headers = { Authorization = Basic("teamer", "teamer-password") } })
        using (var granted = await flotilla.Registry.SendAsync(request))
        {
            Assert.Equal(HttpStatusCode.OK, granted.StatusCode);
            var token = JsonDocument.Parse(await granted.Content.ReadAsStringAsync()).RootElement.GetProperty("token").GetString()!;
            using var toTeam = new HttpRequestMessage(HttpMethod.Post, "v2/team/app/blobs/uploads/") { Headers = { Authorization = new("Bearer", token) } };
            using (var teamUpload = await flotilla.Registry.SendAsync(toTeam))
                Assert.Equal(HttpStatusCode.Accepted, teamUpload.StatusCode);
            using var toOther = new HttpRequestMessage(HttpMethod.Post, "v2/other/app/blobs/uploads/") { Headers = { Authorization = new("Bearer", token) } };
            using var otherUpload = await flotilla.Registry.SendAsync(toOther);
            Assert.Equal(HttpStatusCode.Unauthorized, otherUpload.StatusCode);
            Assert.Contains("error=\"insufficient_scope\"", otherUpload.Headers.WwwAuthenticate.ToString());
        }

        // skopeo follows the same flow.
        var team = await SkopeoAsync("copy", "--dest-tls-verify=false", "--dest-creds", "teamer:teamer-password", $"oci-archive:{archive}:1", Ref("team/app:1"));
        Assert.True(team.ExitCode == 0, team.ToString());
        var other = await SkopeoAsync("copy", "--dest-tls-verify=false", "--dest-creds", "teamer:teamer-password", $"oci-archive:{archive}:1", Ref("other/app:1"));
        Assert.NotEqual(0, other.ExitCode);
        var allround = await SkopeoAsync("copy", "--dest-tls-verify=false", "--dest-creds", "allround:allround-password", $"oci-archive:{archive}:1", Ref("other/app:1"));
        Assert.True(allround.ExitCode == 0, allround.ToString());

        using var store = flotilla.OpenStore();
        await using var session = store.QuerySession();
        Assert.Contains(await session.Events.FetchStreamAsync("repository-team/app"), e => e.Data is ManifestPushed && e.UserName == "teamer");
        var otherPushes = await session.Events.FetchStreamAsync("repository-other/app");
        Assert.Contains(otherPushes, e => e.Data is ManifestPushed && e.UserName == "allround");
        Assert.DoesNotContain(otherPushes, e => e.UserName == "teamer");
        var refused = (await session.Events.FetchStreamAsync(RegistryUserStreams.Access)).Select(e => e.Data).OfType<RegistryScopesDenied>()
            .Where(d => d.User == "teamer").SelectMany(d => d.Scopes).ToList();
        Assert.Contains(refused, s => s.Resource == "repository:other/app" && s.Actions.Contains("push"));
        Assert.DoesNotContain(refused, s => s.Resource == "repository:team/app");
    }
}
