using System.Net;
using System.Text;
using System.Text.Json;
using Flotilla.Tests.Gateway;
using Flotilla.Tests.Support;
using Xunit;

namespace Flotilla.Tests.Audit;

/// <summary>
/// Issue 13, item 13 (part): a client does not choose the correlation id its requests are recorded under. Flotilla
/// makes it; the client's X-Request-Id is kept as the causation id and can be searched by.
/// </summary>
public class ClientRequestIdSpec(RunningFlotilla flotilla) : IClassFixture<RunningFlotilla>, IAsyncLifetime
{
    private const string Image = "testbox:1";

    public async Task InitializeAsync()
    {
        if ((await flotilla.RunDockerAsync("image", "inspect", Image)).ExitCode == 0) return;
        var path = Path.Combine(flotilla.DataRoot, "busybox-rootfs.tar");
        await File.WriteAllBytesAsync(path, BusyboxImage.Rootfs());
        var result = await flotilla.RunDockerAsync("import", "-c", "CMD [\"/bin/sh\"]", path, Image);
        Assert.True(result.ExitCode == 0, result.ToString());
    }

    public Task DisposeAsync() => Task.CompletedTask;

    /// <summary>A create on a connection of its own, with the given X-Request-Id.</summary>
    private async Task<(string Id, string Correlation)> CreateAsync(string name, string requestId)
    {
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{flotilla.DockerPort}/") };
        using var request = new HttpRequestMessage(HttpMethod.Post, $"v1.51/containers/create?name={name}")
        {
            Content = new StringContent($"{{\"Image\":\"{Image}\",\"Cmd\":[\"true\"]}}", Encoding.UTF8, "application/json"),
        };
        request.Headers.TryAddWithoutValidation("X-Request-Id", requestId);
        using var response = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var id = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("Id").GetString()!;
        return (id, response.Headers.GetValues("X-Flotilla-Correlation-Id").Single());
    }

    [Fact]
    public async Task Two_requests_with_the_same_client_id_get_different_correlation_ids_and_the_client_id_is_the_causation()
    {
        var clientId = "trace-" + Guid.NewGuid().ToString("N")[..8];
        var first = await CreateAsync("rid-one", clientId);
        var second = await CreateAsync("rid-two", clientId);
        Assert.NotEqual(first.Correlation, second.Correlation);
        Assert.NotEqual(clientId, first.Correlation);

        var entries = JsonDocument.Parse(await flotilla.Native.GetStringAsync($"api/audit?causation={clientId}&type=container_created"))
            .RootElement.GetProperty("entries").EnumerateArray().ToList();
        Assert.Equal([first.Id, second.Id], entries.Select(e => e.GetProperty("id").GetString()));
        Assert.Equal([first.Correlation, second.Correlation], entries.Select(e => e.GetProperty("correlationId").GetString()));
        // The client's id names no story.
        var byClientId = JsonDocument.Parse(await flotilla.Native.GetStringAsync($"api/audit?correlation={clientId}")).RootElement;
        Assert.Equal(0, byClientId.GetProperty("entries").GetArrayLength());

        // An id that is too long or has other characters is not recorded at all.
        var odd = await CreateAsync("rid-odd", "has spaces<and>" + new string('x', 200));
        var oddEntry = JsonDocument.Parse(await flotilla.Native.GetStringAsync($"api/audit?container={odd.Id}&type=container_created"))
            .RootElement.GetProperty("entries")[0];
        Assert.Equal(JsonValueKind.Null, oddEntry.GetProperty("causationId").ValueKind);
        foreach (var name in new[] { "rid-one", "rid-two", "rid-odd" }) await flotilla.RunDockerAsync("rm", name);
    }
}
