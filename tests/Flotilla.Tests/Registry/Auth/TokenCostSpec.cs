using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using Flotilla.Cluster.EventStore;
using Flotilla.Contracts;
using Flotilla.Contracts.Registry;
using Flotilla.Tests.Gateway;
using Marten;
using Xunit;
using Xunit.Abstractions;

namespace Flotilla.Tests.Registry.Auth;

/// <summary>A registry with a user, so anonymous callers are refused push.</summary>
public sealed class TokenCostFlotilla : RunningFlotilla, IAsyncLifetime
{
    async Task IAsyncLifetime.InitializeAsync()
    {
        await InitializeAsync();
        using var added = await Native.PostAsJsonAsync("api/registry/users", new { name = "owner", password = "owner-password", rights = new[] { "pull", "push" } });
        Assert.Equal(HttpStatusCode.Created, added.StatusCode);
    }
}

/// <summary>
/// Issue 13, item 8: every refused scope re-read the whole <c>registry-access</c> stream before appending, so an
/// anonymous request's cost grew with the stream (2.3 s → 8.1 s for 250 scopes). Now the cost must not grow.
/// </summary>
public sealed class TokenCostSpec(TokenCostFlotilla flotilla, ITestOutputHelper output) : IClassFixture<TokenCostFlotilla>
{
    private const int Scopes = 60;

    private async Task<TimeSpan> RefusedRequestAsync(int round)
    {
        var query = string.Join("&", Enumerable.Range(0, Scopes).Select(i => $"scope=repository:dos/r{round}-{i}:push"));
        var clock = Stopwatch.StartNew();
        using var response = await flotilla.Registry.GetAsync($"token?service=flotilla-registry&{query}");
        clock.Stop();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode); // a partial (here empty) grant is not an error
        return clock.Elapsed;
    }

    private static TimeSpan Median(IEnumerable<TimeSpan> times) => times.OrderBy(t => t).ElementAt(times.Count() / 2);

    [Fact]
    public async Task A_request_refused_many_scopes_costs_the_same_however_long_the_access_stream_grows()
    {
        await RefusedRequestAsync(-1); // warm-up: JIT, connections, the signing key
        var times = new List<TimeSpan>();
        for (var round = 0; round < 5; round++) times.Add(await RefusedRequestAsync(round));

        // The stream grows by 10,000 refusals (as a long-running registry's does, or an attacker's).
        using (var store = flotilla.OpenStore())
        {
            var journal = new MartenEventJournal(store);
            for (var chunk = 0; chunk < 20; chunk++)
            {
                var version = (await journal.ReadAsync(RegistryUserStreams.Access)).Version;
                var events = Enumerable.Range(0, 500).Select(i => (object)new RegistryAccessDenied("anonymous", $"repository:filler/{chunk}-{i}",
                    ["push"], "authentication required", "127.0.0.1", DateTimeOffset.UtcNow)).ToList();
                await journal.AppendAsync(RegistryUserStreams.Access, version, events, new EventMetadata("anonymous", "test", "fill", null));
            }
        }
        for (var round = 5; round < 20; round++) times.Add(await RefusedRequestAsync(round));

        var first = Median(times.Take(5));
        var last = Median(times.TakeLast(5));
        output.WriteLine($"ms per request: {string.Join(", ", times.Select(t => (int)t.TotalMilliseconds))}");
        Assert.True(last <= first * 2 + TimeSpan.FromMilliseconds(150),
            $"first requests {first.TotalMilliseconds:F0} ms, last {last.TotalMilliseconds:F0} ms: {string.Join(", ", times.Select(t => (int)t.TotalMilliseconds))}");
    }
}
