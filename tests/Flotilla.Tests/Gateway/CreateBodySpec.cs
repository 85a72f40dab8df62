using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Flotilla.Gateway.DockerApi;
using Flotilla.Tests.Support;
using Marten;
using Xunit;

namespace Flotilla.Tests.Gateway;

/// <summary>
/// Issue 13, item 11: a create stores what Flotilla understands, never the client's JSON as sent; sizes are capped,
/// and request bodies of JSON endpoints are bounded before they are read.
/// </summary>
public class CreateBodySpec(RunningFlotilla flotilla) : IClassFixture<RunningFlotilla>, IAsyncLifetime
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

    private async Task<int> CreatedEventsAsync()
    {
        await using var store = flotilla.OpenStore();
        await using var session = store.QuerySession();
        return await session.Events.QueryAllRawEvents().Where(e => e.EventTypeName == "container_created").CountAsync();
    }

    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    [Fact]
    public async Task A_20_MB_junk_field_is_refused_and_nothing_is_written()
    {
        var before = await CreatedEventsAsync();
        var junk = new string('j', 20 * 1024 * 1024);
        using var response = await flotilla.Docker.PostAsync("v1.51/containers/create",
            Json("{\"Image\":\"" + Image + "\",\"Cmd\":[\"true\"],\"HostConfig\":{\"Junk\":\"" + junk + "\"}}"));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        var message = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("message").GetString();
        Assert.Contains("takes at most 1048576", message);
        Assert.Equal(before, await CreatedEventsAsync());
    }

    [Fact]
    public async Task A_string_longer_than_the_kernel_takes_is_refused_by_name_and_nothing_is_written()
    {
        var before = await CreatedEventsAsync();
        var value = new string('v', ContainerCreateRequest.MaxStringBytes + 1);
        using var response = await flotilla.Docker.PostAsync("v1.51/containers/create",
            Json("{\"Image\":\"" + Image + "\",\"Cmd\":[\"true\"],\"Env\":[\"A=1\",\"BIG=" + value + "\"]}"));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var message = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("message").GetString();
        Assert.Equal($"Env[1] is {value.Length + 4} bytes long; the limit is {ContainerCreateRequest.MaxStringBytes}", message);
        Assert.Equal(before, await CreatedEventsAsync());
    }

    /// <summary>Unknown fields with values are refused (CreateOptionsSpec); zero-valued ones, as clients send them, pass unstored.</summary>
    [Fact]
    public async Task Unknown_host_config_fields_are_not_stored()
    {
        using var response = await flotilla.Docker.PostAsync("v1.51/containers/create?name=junk-fields", Json("""
            {"Image":"testbox:1","Cmd":["true"],"Domainname":"","ExposedPorts":{"80/tcp":{}},"Junk":null,
             "HostConfig":{"Junk":{"deep":[],"deeper":{"x":0}},"Memory":67108864,"SecurityOpt":["no-new-privileges","no-new-privileges=false"]}}
            """));
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var id = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("Id").GetString();
        await using var store = flotilla.OpenStore();
        await using var session = store.QuerySession();
        var created = (Flotilla.Contracts.Containers.ContainerCreated)(await session.Events.FetchStreamAsync("container-" + id))[0].Data;
        var stored = JsonDocument.Parse(created.Definition.HostConfigJson).RootElement;
        var allowed = typeof(StoredHostConfig).GetProperties().Select(p => p.Name).ToHashSet();
        Assert.All(stored.EnumerateObject(), p => Assert.Contains(p.Name, allowed));
        Assert.Equal(67108864, stored.GetProperty("Memory").GetInt64());
        Assert.Equal(["no-new-privileges"], stored.GetProperty("SecurityOpt").EnumerateArray().Select(e => e.GetString()));
        Assert.DoesNotContain("Junk", created.Definition.HostConfigJson);
        Assert.DoesNotContain("Junk", created.Definition.ConfigJson);
        Assert.Contains("80/tcp", created.Definition.ConfigJson);
        Assert.Equal(0, (await flotilla.RunDockerAsync("rm", "junk-fields")).ExitCode);
    }

    [Fact]
    public async Task What_the_cli_sends_round_trips_through_inspect()
    {
        var bind = Path.Combine(flotilla.DataRoot, "bind-src");
        Directory.CreateDirectory(bind);
        var result = await flotilla.RunDockerAsync("create", "--name", "roundtrip", "--restart", "on-failure:3", "--memory", "64m", "--cpus", "0.5",
            "--cpu-shares", "512", "--pids-limit", "100", "--cap-add", "NET_ADMIN", "--cap-drop", "MKNOD", "--security-opt", "no-new-privileges",
            "--read-only", "--network", "none", "-v", $"{bind}:/x:ro", "-v", "rtvol:/data", "-t", Image, "sh");
        Assert.True(result.ExitCode == 0, result.ToString());
        var inspect = await flotilla.RunDockerAsync("inspect", "roundtrip");
        var hostConfig = JsonDocument.Parse(inspect.Stdout).RootElement[0].GetProperty("HostConfig");
        // The docker CLI sends -v binds in its map's order (random), so only the set is the CLI's.
        Assert.Equal([$"{bind}:/x:ro", "rtvol:/data"], hostConfig.GetProperty("Binds").EnumerateArray().Select(e => e.GetString()).Order());
        Assert.Equal("on-failure", hostConfig.GetProperty("RestartPolicy").GetProperty("Name").GetString());
        Assert.Equal(3, hostConfig.GetProperty("RestartPolicy").GetProperty("MaximumRetryCount").GetInt32());
        Assert.Equal(64 * 1024 * 1024, hostConfig.GetProperty("Memory").GetInt64());
        Assert.Equal(500_000_000, hostConfig.GetProperty("NanoCpus").GetInt64());
        Assert.Equal(512, hostConfig.GetProperty("CpuShares").GetInt64());
        Assert.Equal(100, hostConfig.GetProperty("PidsLimit").GetInt64());
        Assert.Equal(["CAP_NET_ADMIN"], hostConfig.GetProperty("CapAdd").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(["CAP_MKNOD"], hostConfig.GetProperty("CapDrop").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(["no-new-privileges"], hostConfig.GetProperty("SecurityOpt").EnumerateArray().Select(e => e.GetString()));
        Assert.True(hostConfig.GetProperty("ReadonlyRootfs").GetBoolean());
        Assert.Equal("none", hostConfig.GetProperty("NetworkMode").GetString());
        Assert.Equal(2, hostConfig.GetProperty("ConsoleSize").GetArrayLength());
        Assert.Equal(0, (await flotilla.RunDockerAsync("rm", "roundtrip")).ExitCode);
    }

    [Fact]
    public async Task A_300_MB_declared_body_is_refused_before_it_is_sent()
    {
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, flotilla.DockerPort);
        var stream = client.GetStream();
        var head = $"POST /v1.51/containers/create HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {300L * 1024 * 1024}\r\n\r\n";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head));
        await stream.WriteAsync("{\"Image\":\""u8.ToArray());
        // Not a byte more: the answer must come from the declared length alone.
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var buffer = new byte[4096];
        var read = await stream.ReadAsync(buffer, timeout.Token);
        var answer = Encoding.ASCII.GetString(buffer, 0, read);
        Assert.StartsWith("HTTP/1.1 413", answer);
        Assert.Contains("takes at most 1048576", answer);
    }

    [Fact]
    public async Task A_chunked_body_is_cut_off_at_the_cap_with_bounded_memory()
    {
        const long offered = 64L * 1024 * 1024;
        var allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        HttpStatusCode? status = null;
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "v1.51/containers/create") { Content = new JunkJsonContent(offered) };
            request.Headers.TransferEncodingChunked = true;
            using var response = await flotilla.Docker.SendAsync(request);
            status = response.StatusCode;
        }
        catch (HttpRequestException)
        {
            // The server answered 413 and closed while the client was still sending: also a refusal.
        }
        var allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        Assert.True(status is null or HttpStatusCode.RequestEntityTooLarge, $"status {status}");
        // Parsing 64 MiB of JSON into a string costs > 128 MiB; a body cut off at 1 MiB costs a few MiB (whole process, both ends).
        Console.WriteLine($"chunked create body: {allocated / (1024 * 1024)} MiB allocated while {offered / (1024 * 1024)} MiB were offered");
        Assert.True(allocated < 32L * 1024 * 1024, $"allocated {allocated / (1024 * 1024)} MiB while {offered / (1024 * 1024)} MiB were offered");
    }

    /// <summary><c>{"Image":"…","Junk":"jjjj…</c> streamed from one small buffer, up to <paramref name="length"/> bytes.</summary>
    private sealed class JunkJsonContent : HttpContent
    {
        private readonly long length;

        // application/json, as the docker CLI sends it: the cap, not the JSON guard, must be what refuses it.
        public JunkJsonContent(long length)
        {
            this.length = length;
            Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        }

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            var start = Encoding.ASCII.GetBytes($"{{\"Image\":\"{Image}\",\"Junk\":\"");
            await stream.WriteAsync(start);
            var chunk = Encoding.ASCII.GetBytes(new string('j', 64 * 1024));
            for (long sent = start.Length; sent < length; sent += chunk.Length) await stream.WriteAsync(chunk);
            await stream.WriteAsync("\"}"u8.ToArray());
        }

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }
}
