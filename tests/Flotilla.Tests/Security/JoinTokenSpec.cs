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
/// Joining with a token (<c>FLT1-&lt;CA fingerprint&gt;-&lt;secret&gt;</c>): a CA holder's enrollment listener signs
/// the joiner's own key when the request carries the HMAC proof of the secret; the joiner accepts only an answer
/// from the CA the token names. A wrong secret gets nothing; an impostor server (another CA) is not believed.
/// </summary>
public sealed class JoinTokenSpec : IAsyncLifetime
{
    private readonly List<WebApplication> _servers = [];
    private readonly string _root = Path.Combine(Path.GetTempPath(), "flotilla-join-" + Guid.NewGuid().ToString("N")[..8]);

    private async Task<Uri> ServeEnrollmentAsync(ClusterCa ca, JoinToken token)
    {
        var port = FreePort.Next();
        var tls = new ClusterTls(ca.Issue(ClusterRole.Node, "ca-holder", ["127.0.0.1"]), ca.Certificate);
        var options = new EnrollmentOptions(new IPEndPoint(IPAddress.Loopback, port), ca, token, tls);
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
        var token = JoinToken.ForCa(ca, Path.Combine(_root, "holder"));
        var at = await ServeEnrollmentAsync(ca, token);

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
        var token = JoinToken.ForCa(ca, Path.Combine(_root, "holder"));
        var at = await ServeEnrollmentAsync(ca, token);
        var guessed = token with { Secret = new byte[32] };
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() =>
            Enrollment.JoinAsync(guessed, [at], ClusterRole.Node, "intruder", ["127.0.0.1"], CancellationToken.None));
        Assert.Contains("403", e.Message);
    }

    [Fact]
    public async Task A_server_of_another_CA_is_not_believed()
    {
        using var ca = ClusterCa.Create();
        var token = JoinToken.ForCa(ca, Path.Combine(_root, "holder"));
        using var impostorCa = ClusterCa.Create("impostor");
        // The impostor knows the secret (say, it stole it) but not the CA key: what it signs is not the token's CA.
        var at = await ServeEnrollmentAsync(impostorCa, token with { CaFingerprint = impostorCa.Fingerprint });
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() =>
            Enrollment.JoinAsync(token, [at], ClusterRole.Node, "n1", ["127.0.0.1"], CancellationToken.None));
        Assert.Contains("not the one the join token names", e.Message);
    }

    [Fact]
    public void Tokens_round_trip_and_nonsense_is_refused()
    {
        var token = new JoinToken(new string('a', 64), Enumerable.Range(0, 32).Select(i => (byte)(i * 7)).ToArray());
        var parsed = JoinToken.Parse(token.ToString());
        Assert.Equal(token.CaFingerprint, parsed.CaFingerprint);
        Assert.Equal(token.Secret, parsed.Secret);
        Assert.Throws<FormatException>(() => JoinToken.Parse("SWMTKN-1-abc-def"));
        Assert.Throws<FormatException>(() => JoinToken.Parse("FLT1-" + new string('a', 64) + "-AAAA"));
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var server in _servers) await server.DisposeAsync();
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }
}
