using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.IdentityModel.JsonWebTokens;
using Xunit;

namespace Flotilla.Tests.Registry.Auth;

/// <summary>Issue 13, item 14 (part): the registry's signing key rotates, with a <c>kid</c>, on the native API.</summary>
public sealed class RegistryKeyRotationSpec(TokenCostFlotilla flotilla) : IClassFixture<TokenCostFlotilla>
{
    private async Task<string> TokenAsync()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "token?service=flotilla-registry&scope=repository:rot/app:pull")
        {
            Headers = { Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes("owner:owner-password"))) },
        };
        using var response = await flotilla.Registry.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("token").GetString()!;
    }

    private async Task<HttpStatusCode> BaseWithAsync(string token)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "v2/rot/app/tags/list") { Headers = { Authorization = new("Bearer", token) } };
        using var response = await flotilla.Registry.SendAsync(request);
        return response.StatusCode;
    }

    [Fact]
    public async Task Rotate_then_retire_the_old_key()
    {
        var old = await TokenAsync();
        var oldKid = new JsonWebToken(old).Kid;
        Assert.False(string.IsNullOrEmpty(oldKid));

        using (var rotated = await flotilla.Native.PostAsync("api/registry/token-keys", null))
            Assert.Equal(HttpStatusCode.Created, rotated.StatusCode);
        var keys = await flotilla.Native.GetFromJsonAsync<JsonElement>("api/registry/token-keys");
        Assert.Equal(2, keys.GetArrayLength());
        var newKid = keys[0].GetProperty("kid").GetString();
        Assert.True(keys[0].GetProperty("signing").GetBoolean());

        var fresh = await TokenAsync();
        Assert.Equal(newKid, new JsonWebToken(fresh).Kid);
        Assert.NotEqual(HttpStatusCode.Unauthorized, await BaseWithAsync(old)); // the old key still verifies
        Assert.NotEqual(HttpStatusCode.Unauthorized, await BaseWithAsync(fresh));

        using (var signing = await flotilla.Native.DeleteAsync($"api/registry/token-keys/{newKid}"))
            Assert.Equal(HttpStatusCode.Conflict, signing.StatusCode);
        using (var retired = await flotilla.Native.DeleteAsync($"api/registry/token-keys/{oldKid}"))
            Assert.Equal(HttpStatusCode.NoContent, retired.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, await BaseWithAsync(old));
        Assert.NotEqual(HttpStatusCode.Unauthorized, await BaseWithAsync(fresh));
    }
}
