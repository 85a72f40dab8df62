using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using Flotilla.Contracts.Registry;
using Flotilla.Gateway.Registry.Auth;
using Flotilla.Tests.Gateway;
using Marten;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Flotilla.Tests.Registry.Auth;

/// <summary>A registry with users and tight <c>/token</c> limits (the defaults are far higher).</summary>
public sealed class ThrottledRegistryFlotilla : RunningFlotilla, IAsyncLifetime
{
    protected override void ConfigureServices(IServiceCollection services) =>
        services.AddSingleton(new TokenThrottleOptions(PerAddress: 1000, PerAddressRefill: 1000, PerUser: 5, PerUserRefill: 1,
            FailedLogins: 3, FailedLoginRecovery: TimeSpan.FromMinutes(10), RefillPeriod: TimeSpan.FromMinutes(1)));

    async Task IAsyncLifetime.InitializeAsync()
    {
        await InitializeAsync();
        foreach (var name in new[] { "hasty", "patient", "target" })
        {
            using var added = await Native.PostAsJsonAsync("api/registry/users", new { name, password = name + "-password", rights = new[] { "pull" } });
            Assert.Equal(HttpStatusCode.Created, added.StatusCode);
        }
    }

    public async Task<HttpResponseMessage> TokenAsync(string user, string password, string query = "")
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "token?service=flotilla-registry" + query)
        {
            Headers = { Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}"))) },
        };
        return await Registry.SendAsync(request);
    }

    public async Task<List<object>> AccessEventsAsync()
    {
        using var store = OpenStore();
        await using var session = store.QuerySession();
        return (await session.Events.FetchStreamAsync(RegistryUserStreams.Access)).Select(e => e.Data).ToList();
    }
}

/// <summary>Issue 13, items 8 and 15: <c>/token</c> is capped and rate-limited, and passwords cannot be guessed at speed.</summary>
public sealed class TokenThrottleSpec(ThrottledRegistryFlotilla flotilla) : IClassFixture<ThrottledRegistryFlotilla>
{
    private static async Task<string> CodeOfAsync(HttpResponseMessage response) => (await RegistryHttp.ErrorOfAsync(response)).Code;

    [Fact]
    public async Task A_user_over_its_rate_gets_429_TOOMANYREQUESTS_and_other_users_do_not()
    {
        var statuses = new List<HttpStatusCode>();
        HttpResponseMessage? limited = null;
        for (var i = 0; i < 12 && limited is null; i++)
        {
            var response = await flotilla.TokenAsync("hasty", "hasty-password");
            statuses.Add(response.StatusCode);
            if (response.StatusCode == HttpStatusCode.TooManyRequests) limited = response;
            else response.Dispose();
        }
        Assert.True(limited is not null, string.Join(",", statuses));
        Assert.Equal("TOOMANYREQUESTS", await CodeOfAsync(limited!));
        Assert.True(limited!.Headers.RetryAfter is not null);
        limited.Dispose();

        using var other = await flotilla.TokenAsync("patient", "patient-password");
        Assert.Equal(HttpStatusCode.OK, other.StatusCode);
        Assert.Contains(await flotilla.AccessEventsAsync(), e => e is RegistryAccessDenied { User: "hasty", Reason: "too many token requests" });
    }

    [Fact]
    public async Task After_too_many_wrong_passwords_even_the_right_one_is_refused_for_a_while()
    {
        for (var i = 0; i < 3; i++)
        {
            using var wrong = await flotilla.TokenAsync("target", $"guess-{i}-wrong");
            Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
        }
        using var blocked = await flotilla.TokenAsync("target", "target-password");
        Assert.Equal(HttpStatusCode.TooManyRequests, blocked.StatusCode);
        Assert.Equal("TOOMANYREQUESTS", await CodeOfAsync(blocked));
        var events = await flotilla.AccessEventsAsync();
        Assert.Equal(3, events.Count(e => e is RegistryAccessDenied { User: "target", Reason: "invalid username or password" }));
        Assert.Contains(events, e => e is RegistryAccessDenied { User: "target", Reason: "too many failed logins" });
    }

    [Fact]
    public async Task More_than_64_scopes_or_an_overlong_scope_is_a_bad_request()
    {
        var many = string.Concat(Enumerable.Range(0, TokenEndpoint.MaxScopes + 1).Select(i => $"&scope=repository:many/r{i}:pull"));
        using (var tooMany = await flotilla.Registry.GetAsync("token?service=flotilla-registry" + many))
        {
            Assert.Equal(HttpStatusCode.BadRequest, tooMany.StatusCode);
            Assert.Equal("DENIED", await CodeOfAsync(tooMany));
        }
        Assert.Contains(await flotilla.AccessEventsAsync(), e => e is RegistryAccessDenied { User: "anonymous" } d && d.Reason.Contains("scopes"));

        var exactly = string.Concat(Enumerable.Range(0, TokenEndpoint.MaxScopes).Select(i => $"&scope=repository:many/r{i}:pull"));
        using (var fine = await flotilla.Registry.GetAsync("token?service=flotilla-registry" + exactly))
            Assert.Equal(HttpStatusCode.OK, fine.StatusCode);
        using (var longName = await flotilla.Registry.GetAsync($"token?service=flotilla-registry&scope=repository:{new string('a', 400)}:pull"))
            Assert.Equal(HttpStatusCode.BadRequest, longName.StatusCode);
    }

    [Fact]
    public void An_address_is_limited_across_user_names_and_a_user_across_addresses()
    {
        using var throttle = new TokenThrottle(new TokenThrottleOptions(PerAddress: 3, PerAddressRefill: 1, PerUser: 3, PerUserRefill: 1,
            RefillPeriod: TimeSpan.FromHours(1)));
        for (var i = 0; i < 3; i++) Assert.True(throttle.TryRequest(new TokenCaller("10.0.0.1", $"name-{i}"), out _));
        Assert.False(throttle.TryRequest(new TokenCaller("10.0.0.1", "yet-another-name"), out _));
        Assert.True(throttle.TryRequest(new TokenCaller("10.0.0.2", "yet-another-name"), out _));

        for (var i = 0; i < 2; i++) Assert.True(throttle.TryRequest(new TokenCaller($"10.1.0.{i}", "yet-another-name"), out _));
        Assert.False(throttle.TryRequest(new TokenCaller("10.1.0.9", "yet-another-name"), out _));

        // Anonymous callers are limited per address only: one cannot use up the others' requests.
        for (var i = 0; i < 10; i++) Assert.True(throttle.TryRequest(new TokenCaller($"10.2.0.{i}", TokenCaller.Anonymous), out _));
    }
}
