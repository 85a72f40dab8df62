using System.Net;
using System.Net.Http.Json;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.Json;
using Flotilla.Cluster.EventStore;
using Flotilla.Cluster.Hosting;
using Flotilla.Cluster.Security;
using Flotilla.Contracts.Security;
using Flotilla.Gateway.Http;
using Flotilla.Tests.Infrastructure;
using Flotilla.Tests.Support;
using Marten;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;
using Xunit.Abstractions;

namespace Flotilla.Tests.Security;

/// <summary>
/// Strangers on the enrollment listener of a CA holder (its real listener, with its cluster-access log on PostgreSQL):
/// an expired token, a token made before <c>join-token --rotate</c>, and a burst of bad tokens from one address get no
/// certificate, the burst is cut off with 429 and <c>Retry-After</c>, and every kind of refusal is a
/// <see cref="ClusterAccessDenied"/> with the source address. A genuine enrollment is a <see cref="ClusterMemberEnrolled"/>
/// naming the certificate's serial number. Before, tokens never expired, could not be revoked but by deleting a file,
/// attempts were unlimited, and a successful enrollment was only logged.
/// </summary>
[Collection("postgres")]
public sealed class EnrollmentIntruderSpec(PostgresFixture postgres, ITestOutputHelper output) : IAsyncLifetime
{
    private readonly List<WebApplication> _servers = [];
    private readonly string _root = Path.Combine(Path.GetTempPath(), "flotilla-enroll-" + Guid.NewGuid().ToString("N")[..8]);
    private DocumentStore _store = null!;
    private MartenEventJournal _journal = null!;

    public async Task InitializeAsync()
    {
        _store = FlotillaStore.Create(await postgres.NewDatabaseAsync("enroll_intruder"));
        await _store.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
        _journal = new MartenEventJournal(_store);
    }

    public async Task DisposeAsync()
    {
        foreach (var server in _servers) await server.DisposeAsync();
        _store.Dispose();
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private sealed record Holder(string Name, ClusterCa Ca, string SecretDirectory, Uri At, int Port);

    /// <summary>A CA holder's enrollment listener as <c>flotilla node</c> runs it, recording in <c>cluster-access-&lt;name&gt;</c>.</summary>
    private async Task<Holder> ServeAsync(string name)
    {
        var ca = ClusterCa.Create();
        var secrets = Path.Combine(_root, name);
        JoinSecret.LoadOrCreate(secrets);
        var port = FreePort.Next();
        var tls = new ClusterTls(ca.Issue(ClusterRole.Node, name, ["127.0.0.1"]), ca.Certificate);
        var options = new EnrollmentOptions(new IPEndPoint(IPAddress.Loopback, port), ca, secrets, tls);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        var log = new ClusterAccessLog(_journal, new FlotillaClusterOptions { NodeName = name, PostgresConnectionString = "unused" },
            NullLogger<ClusterAccessLog>.Instance);
        builder.Services.AddSingleton(log);
        builder.Services.AddHostedService(_ => log);
        builder.WebHost.ConfigureKestrel(k => EnrollmentEndpoint.Listen(k, options));
        var app = builder.Build();
        EnrollmentEndpoint.Map(app, options);
        await app.StartAsync();
        _servers.Add(app);
        return new Holder(name, ca, secrets, new Uri($"https://127.0.0.1:{port}"), port);
    }

    private static JoinToken Token(Holder holder, TimeSpan? ttl = null, DateTimeOffset? now = null) =>
        JoinToken.Issue(holder.Ca, JoinSecret.Load(holder.SecretDirectory)!, ttl ?? JoinToken.DefaultTtl, now ?? DateTimeOffset.UtcNow);

    private async Task<List<object>> EventsAsync(string holder) =>
        [.. (await _journal.ReadAsync(ClusterAccessStreams.Key(holder))).Events];

    private async Task<List<ClusterAccessDenied>> DenialsAsync(Holder holder, Func<List<ClusterAccessDenied>, bool> until)
    {
        List<ClusterAccessDenied> denials = [];
        await Eventually.TrueAsync(async () =>
        {
            denials = [.. (await EventsAsync(holder.Name)).OfType<ClusterAccessDenied>()];
            return until(denials);
        }, TimeSpan.FromSeconds(10));
        foreach (var d in denials) output.WriteLine($"{d.Surface} {d.RemoteAddress} {d.Subject}: {d.Reason} (+{d.Repeats})");
        return denials;
    }

    /// <summary>An enrollment request proven with <paramref name="token"/>, posted from <paramref name="from"/> (a loopback address).</summary>
    private static async Task<HttpResponseMessage> PostAsync(Holder holder, JoinToken token, string name, IPAddress from)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new EnrollmentRequest("node", name, ["127.0.0.1"], Convert.ToBase64String(key.ExportSubjectPublicKeyInfo()),
            token.Expires.ToUnixTimeSeconds());
        request = request with { Proof = Convert.ToBase64String(token.Proof(request)) };
        var handler = new SocketsHttpHandler
        {
            UseProxy = false,
            SslOptions = new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = (_, _, _, _) => true },
            // From a chosen loopback address: the limit is per source address.
            ConnectCallback = async (context, ct) =>
            {
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
                socket.Bind(new IPEndPoint(from, 0));
                await socket.ConnectAsync(context.DnsEndPoint, ct);
                return new NetworkStream(socket, ownsSocket: true);
            },
        };
        using var http = new HttpClient(handler);
        return await http.PostAsJsonAsync(new Uri(holder.At, Enrollment.Path), request);
    }

    [Fact]
    public async Task A_genuine_enrollment_is_recorded_with_its_certificate_serial_and_source()
    {
        var holder = await ServeAsync("holder-good");
        var tls = await Enrollment.JoinAsync(Token(holder), [holder.At], ClusterRole.Gateway, "gw-7", ["10.1.2.3"], CancellationToken.None);

        var enrolled = Assert.Single((await EventsAsync(holder.Name)).OfType<ClusterMemberEnrolled>());
        Assert.Equal(("gateway", "gw-7", "127.0.0.1"), (enrolled.Role, enrolled.Name, enrolled.RemoteAddress));
        Assert.Equal(tls.Certificate.SerialNumber, enrolled.Serial);
        Assert.Equal(new[] { "10.1.2.3" }, enrolled.Addresses);
    }

    [Fact]
    public async Task An_expired_token_gets_no_certificate_and_is_recorded()
    {
        var holder = await ServeAsync("holder-expired");
        // Genuine (made with the holder's secret), but its hour ended an hour ago.
        var expired = Token(holder, TimeSpan.FromHours(1), DateTimeOffset.UtcNow.AddHours(-2));
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() =>
            Enrollment.JoinAsync(expired, [holder.At], ClusterRole.Node, "late", ["127.0.0.1"], CancellationToken.None));
        Assert.Contains("403", e.Message);
        Assert.Contains("expired", e.Message);
        // Moving the expiry forward breaks the proof: the expiry is part of the token's secret.
        var stretched = expired with { Expires = DateTimeOffset.UtcNow.AddHours(1) };
        var e2 = await Assert.ThrowsAsync<InvalidOperationException>(() =>
            Enrollment.JoinAsync(stretched, [holder.At], ClusterRole.Node, "late", ["127.0.0.1"], CancellationToken.None));
        Assert.Contains("does not match", e2.Message);

        var denials = await DenialsAsync(holder, d => d.Count >= 2);
        Assert.Contains(denials, d => d.Reason.Contains("expired") && d.RemoteAddress == "127.0.0.1" && d.Subject == "node late");
        Assert.Contains(denials, d => d.Reason.Contains("does not match") && d.RemoteAddress == "127.0.0.1");
        Assert.All(denials, d => Assert.Equal(ClusterSurfaces.Enrollment, d.Surface));
        Assert.Empty((await EventsAsync(holder.Name)).OfType<ClusterMemberEnrolled>());
    }

    [Fact]
    public async Task A_token_made_before_rotation_gets_nothing_and_a_new_one_joins_without_a_restart()
    {
        var holder = await ServeAsync("holder-rotated");
        var before = Token(holder);
        JoinSecret.Rotate(holder.SecretDirectory); // what 'flotilla cluster join-token --rotate' does on the holder's disk
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() =>
            Enrollment.JoinAsync(before, [holder.At], ClusterRole.Node, "revoked", ["127.0.0.1"], CancellationToken.None));
        Assert.Contains("403", e.Message);

        // The same running listener takes a token of the new secret.
        await Enrollment.JoinAsync(Token(holder), [holder.At], ClusterRole.Node, "fresh", ["127.0.0.1"], CancellationToken.None);

        var denials = await DenialsAsync(holder, d => d.Count >= 1);
        Assert.Contains(denials, d => d.Subject == "node revoked" && d.Reason.Contains("does not match") && d.RemoteAddress == "127.0.0.1");
        Assert.Equal("fresh", Assert.Single((await EventsAsync(holder.Name)).OfType<ClusterMemberEnrolled>()).Name);
    }

    [Fact]
    public async Task A_burst_of_bad_tokens_from_one_address_is_cut_off_with_retry_after_and_recorded()
    {
        var holder = await ServeAsync("holder-burst");
        var guessed = Token(holder) with { Secret = RandomNumberGenerator.GetBytes(32) };
        var statuses = new List<HttpStatusCode>();
        HttpResponseMessage? limited = null;
        for (var i = 0; i < 2 * EnrollmentLimits.Default.Burst; i++)
        {
            var response = await PostAsync(holder, guessed, "guess-" + i, IPAddress.Loopback);
            statuses.Add(response.StatusCode);
            if (response.StatusCode == HttpStatusCode.TooManyRequests) limited ??= response;
            else response.Dispose();
        }
        output.WriteLine(string.Join(",", statuses.Select(s => (int)s)));
        Assert.Equal(EnrollmentLimits.Default.Burst, statuses.Count(s => s == HttpStatusCode.Forbidden));
        Assert.True(statuses.Skip(EnrollmentLimits.Default.Burst).All(s => s == HttpStatusCode.TooManyRequests), "the attempts after the burst are limited");
        using (limited)
        {
            Assert.NotNull(limited!.Headers.RetryAfter?.Delta);
            Assert.InRange(limited.Headers.RetryAfter!.Delta!.Value, TimeSpan.FromSeconds(1), EnrollmentLimits.Default.Refill);
            var body = JsonDocument.Parse(await limited.Content.ReadAsStringAsync()).RootElement;
            Assert.Contains("too many enrollment attempts", body.GetProperty("message").GetString());
        }
        // Even a good token from the limited address waits; the limit is per address, so a joiner elsewhere is served.
        using (var same = await PostAsync(holder, Token(holder), "honest-same", IPAddress.Loopback))
            Assert.Equal(HttpStatusCode.TooManyRequests, same.StatusCode);
        using (var other = await PostAsync(holder, Token(holder), "honest-other", IPAddress.Parse("127.0.0.2")))
            Assert.Equal(HttpStatusCode.OK, other.StatusCode);

        var denials = await DenialsAsync(holder, d => d.Any(x => x.Reason.Contains("too many")) && d.Any(x => x.Reason.Contains("does not match")));
        Assert.Contains(denials, d => d.Reason.Contains("does not match") && d.RemoteAddress == "127.0.0.1" && d.Subject == "node guess-0");
        Assert.Contains(denials, d => d.Reason == "too many enrollment attempts" && d.RemoteAddress == "127.0.0.1");
        // Bounded: the window counts repeats of a kind instead of writing each (DenialStreamSpec), so far fewer events than refusals.
        Assert.True(denials.Count <= 4, $"{denials.Count} events for {statuses.Count + 1} refusals");
        var enrolled = Assert.Single((await EventsAsync(holder.Name)).OfType<ClusterMemberEnrolled>());
        Assert.Equal(("honest-other", "127.0.0.2"), (enrolled.Name, enrolled.RemoteAddress));
    }
}
