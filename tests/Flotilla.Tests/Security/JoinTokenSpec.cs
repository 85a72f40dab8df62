using System.Net;
using Flotilla.Cli.Hosting;
using Flotilla.Cluster.Security;
using Flotilla.Gateway.Http;
using Flotilla.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Xunit;

namespace Flotilla.Tests.Security;

/// <summary>
/// Joining with a token (<c>FLT2-&lt;CA fingerprint&gt;-&lt;expiry&gt;-&lt;secret&gt;</c>): a CA holder's enrollment listener signs
/// the joiner's own key when the request carries the HMAC proof of the secret; the joiner accepts only an answer
/// from the CA the token names. A wrong secret gets nothing; an impostor server (another CA) is not believed.
/// </summary>
public sealed class JoinTokenSpec : IAsyncLifetime
{
    private readonly List<WebApplication> _servers = [];
    private readonly string _root = Path.Combine(Path.GetTempPath(), "flotilla-join-" + Guid.NewGuid().ToString("N")[..8]);

    private string Holder => Path.Combine(_root, "holder");

    private JoinToken TokenOf(ClusterCa ca) => JoinToken.Issue(ca, JoinSecret.LoadOrCreate(Holder), JoinToken.DefaultTtl, DateTimeOffset.UtcNow);

    private async Task<Uri> ServeEnrollmentAsync(ClusterCa ca, string secretDirectory)
    {
        var port = FreePort.Next();
        var tls = new ClusterTls(ca.Issue(ClusterRole.Node, "ca-holder", ["127.0.0.1"]), ca.Certificate);
        var options = new EnrollmentOptions(new IPEndPoint(IPAddress.Loopback, port), ca, secretDirectory, tls);
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.ConfigureKestrel(k => EnrollmentEndpoint.Listen(k, options));
        var app = builder.Build();
        EnrollmentEndpoint.Map(app, options);
        await app.StartAsync();
        _servers.Add(app);
        return new Uri($"https://127.0.0.1:{port}");
    }

    [Fact]
    public async Task A_joiner_with_the_token_gets_a_certificate_of_the_cluster_CA_for_its_own_key()
    {
        using var ca = ClusterCa.Create();
        var token = TokenOf(ca);
        var at = await ServeEnrollmentAsync(ca, Holder);

        var data = Path.Combine(_root, "joiner");
        var tls = await ClusterIdentity.ResolveAsync(data, ClusterRole.Gateway, "gw-1", ["10.1.2.3"], founding: false,
            new ClusterPkiFlags(JoinToken: JoinToken.Parse(token.ToString()).ToString()), [at], null, CancellationToken.None);
        Assert.Equal(new ClusterPeer(ClusterRole.Gateway, "gw-1", tls.Certificate.Subject), tls.Self);
        Assert.True(ClusterTls.VerifyAgainst(ca.Certificate, tls.Certificate).Trusted);
        // Saved for the next start, which needs no token.
        var again = ClusterIdentity.Resolve(data, ClusterRole.Gateway, "gw-1", [], founding: false, new ClusterPkiFlags());
        Assert.Equal(tls.Certificate.Thumbprint, again.Certificate.Thumbprint);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(data, "pki", "key.pem")));
    }

    [Fact]
    public async Task A_wrong_secret_gets_nothing()
    {
        using var ca = ClusterCa.Create();
        var token = TokenOf(ca);
        var at = await ServeEnrollmentAsync(ca, Holder);
        var guessed = token with { Secret = new byte[32] };
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() =>
            Enrollment.JoinAsync(guessed, [at], ClusterRole.Node, "intruder", ["127.0.0.1"], CancellationToken.None));
        Assert.Contains("403", e.Message);
    }

    [Fact]
    public async Task A_server_of_another_CA_is_not_believed()
    {
        using var ca = ClusterCa.Create();
        var token = TokenOf(ca);
        using var impostorCa = ClusterCa.Create("impostor");
        // The impostor knows the secret (say, it stole it) but not the CA key: what it signs is not the token's CA.
        var at = await ServeEnrollmentAsync(impostorCa, Holder);
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() =>
            Enrollment.JoinAsync(token, [at], ClusterRole.Node, "n1", ["127.0.0.1"], CancellationToken.None));
        Assert.Contains("not the one the join token names", e.Message);
    }

    [Fact]
    public void Tokens_round_trip_and_nonsense_is_refused()
    {
        var token = new JoinToken(new string('a', 64), DateTimeOffset.FromUnixTimeSeconds(1_900_000_000), Enumerable.Range(0, 32).Select(i => (byte)(i * 7)).ToArray());
        var parsed = JoinToken.Parse(token.ToString());
        Assert.Equal(token.CaFingerprint, parsed.CaFingerprint);
        Assert.Equal(token.Expires, parsed.Expires);
        Assert.Equal(token.Secret, parsed.Secret);
        Assert.Throws<FormatException>(() => JoinToken.Parse("SWMTKN-1-abc-def"));
        Assert.Throws<FormatException>(() => JoinToken.Parse("FLT2-" + new string('a', 64) + "-1900000000-AAAA"));
        Assert.Throws<FormatException>(() => JoinToken.Parse("FLT2-" + new string('a', 64) + "-soon-" + token.ToString().Split('-', 4)[3]));
        // The earlier, never-expiring form is refused with a word on what to do.
        var old = Assert.Throws<FormatException>(() => JoinToken.Parse("FLT1-" + new string('a', 64) + "-" + token.ToString().Split('-', 4)[3]));
        Assert.Contains("flotilla cluster join-token", old.Message);
    }

    [Fact]
    public async Task The_cli_prints_tokens_with_the_asked_lifetime_and_rotate_revokes_the_earlier_ones()
    {
        var flotilla = Path.Combine(AppContext.BaseDirectory, "flotilla.dll");
        var data = Path.Combine(_root, "cli");
        Assert.Equal(0, (await ProcessRunner.RunAsync("dotnet", [flotilla, "cluster", "ca", "init", "--data", data], TimeSpan.FromSeconds(60))).ExitCode);
        var pki = Path.Combine(data, "pki");
        using var ca = ClusterCa.Load(Path.Combine(pki, "ca.pem"), Path.Combine(pki, "ca-key.pem"));

        async Task<JoinToken> PrintAsync(params string[] flags)
        {
            var run = await ProcessRunner.RunAsync("dotnet", [flotilla, "cluster", "join-token", "--data", data, .. flags], TimeSpan.FromSeconds(60));
            Assert.True(run.ExitCode == 0, run.Stderr);
            return JoinToken.Parse(run.Stdout.Trim());
        }
        bool Accepted(JoinToken token)
        {
            using var key = System.Security.Cryptography.ECDsa.Create();
            var request = new EnrollmentRequest("node", "n", [], Convert.ToBase64String(key.ExportSubjectPublicKeyInfo()), token.Expires.ToUnixTimeSeconds());
            request = request with { Proof = Convert.ToBase64String(token.Proof(request)) };
            return Enrollment.Answer(ca, JoinSecret.Load(pki), request, DateTimeOffset.UtcNow).Response is not null;
        }

        var daily = await PrintAsync();
        Assert.InRange(daily.Expires - DateTimeOffset.UtcNow, TimeSpan.FromHours(23.9), TimeSpan.FromHours(24));
        var brief = await PrintAsync("--ttl", "90m");
        Assert.InRange(brief.Expires - DateTimeOffset.UtcNow, TimeSpan.FromMinutes(89), TimeSpan.FromMinutes(90));
        Assert.True(Accepted(daily) && Accepted(brief));
        var rotated = await PrintAsync("--rotate");
        Assert.False(Accepted(daily), "a token printed before --rotate still enrolls");
        Assert.False(Accepted(brief), "a token printed before --rotate still enrolls");
        Assert.True(Accepted(rotated));

        var never = await ProcessRunner.RunAsync("dotnet", [flotilla, "cluster", "join-token", "--data", data, "--ttl", "0"], TimeSpan.FromSeconds(60));
        Assert.Equal(1, never.ExitCode);
        Assert.Contains("--ttl must be a positive duration", never.Stderr);
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var server in _servers) await server.DisposeAsync();
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }
}
