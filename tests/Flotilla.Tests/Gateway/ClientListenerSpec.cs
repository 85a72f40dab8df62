using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Flotilla.Gateway;
using Flotilla.Gateway.Listeners;
using Flotilla.Tests.Support;
using Xunit;

namespace Flotilla.Tests.Gateway;

/// <summary>
/// Intruder tests of the client listeners (issue 13, items 4–6): a web page's cross-origin or DNS-rebinding request,
/// a local user without access to the socket, a caller without a native API token. Each is refused and recorded.
/// </summary>
public class ClientListenerSpec(RunningFlotilla flotilla) : IClassFixture<RunningFlotilla>, IAsyncLifetime
{
    private const string Image = "listenerbox:1";
    private const string PrivilegedCreate = """{"Image":"listenerbox:1","Cmd":["sh"],"HostConfig":{"Privileged":true,"Binds":["/:/host"]}}""";

    public async Task InitializeAsync()
    {
        if ((await flotilla.RunDockerAsync("image", "inspect", Image)).ExitCode == 0) return;
        var path = Path.Combine(flotilla.DataRoot, "listener-rootfs.tar");
        await File.WriteAllBytesAsync(path, BusyboxImage.Rootfs());
        var import = await flotilla.RunDockerAsync("import", "-c", "CMD [\"/bin/sh\"]", path, Image);
        Assert.True(import.ExitCode == 0, import.ToString());
    }

    public Task DisposeAsync() => Task.CompletedTask;

    // ------------------------------------------------------------------ browsers (CSRF, DNS rebinding)

    [Fact]
    public async Task A_cross_origin_text_plain_post_cannot_create_a_container_and_is_recorded()
    {
        var name = "csrf-" + Guid.NewGuid().ToString("N")[..8];
        // What a page on http://evil.example sends with fetch(…, {mode: "no-cors", method: "POST", body}).
        using var request = new HttpRequestMessage(HttpMethod.Post, $"v1.51/containers/create?name={name}")
        {
            Content = new StringContent(PrivilegedCreate, Encoding.UTF8, "text/plain"),
        };
        request.Headers.Add("Origin", "http://evil.example");
        request.Headers.Add("Sec-Fetch-Site", "cross-site");
        request.Headers.Add("Sec-Fetch-Mode", "no-cors");
        using var response = await flotilla.Docker.SendAsync(request);
        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        Assert.Contains("http://evil.example", Message(await response.Content.ReadAsStringAsync()));
        Assert.NotEqual(0, (await flotilla.RunDockerAsync("inspect", name)).ExitCode);
        await AssertDeniedAsync("DockerApi", "/v1.51/containers/create", "http://evil.example");
    }

    [Fact]
    public async Task A_text_plain_body_is_refused_as_dockerd_refuses_it_even_without_an_origin()
    {
        var name = "plain-" + Guid.NewGuid().ToString("N")[..8];
        using var response = await flotilla.Docker.PostAsync($"v1.51/containers/create?name={name}",
            new StringContent(PrivilegedCreate, Encoding.UTF8, "text/plain"));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("unsupported Content-Type header (text/plain; charset=utf-8): must be 'application/json'",
            Message(await response.Content.ReadAsStringAsync()));
        Assert.NotEqual(0, (await flotilla.RunDockerAsync("inspect", name)).ExitCode);
        // moby's CheckForJSON: no body and no Content-Type is fine.
        using var ping = await flotilla.Docker.PostAsync("v1.51/containers/no-such-container/stop", null);
        Assert.Equal(HttpStatusCode.NotFound, ping.StatusCode);
    }

    [Fact]
    public async Task A_rebound_host_name_is_refused_on_every_listener()
    {
        foreach (var (client, listener) in new[] { (flotilla.Docker, "DockerApi"), (flotilla.Native, "NativeApi"), (flotilla.Registry, "Registry") })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, listener == "Registry" ? "v2/" : listener == "NativeApi" ? "api/nodes" : "v1.51/containers/json");
            // DNS rebinding: the page's own name now resolves to 127.0.0.1, so the Host header still names it.
            request.Headers.Host = "rebind.evil.example:" + client.BaseAddress!.Port;
            using var response = await client.SendAsync(request);
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{listener}: {response.StatusCode} {body}");
            if (listener == "Registry")
                Assert.Equal("DENIED", JsonDocument.Parse(body).RootElement.GetProperty("errors")[0].GetProperty("code").GetString());
            else
                Assert.Contains("rebind.evil.example", Message(body));
            await AssertDeniedAsync(listener, null, null, host: "rebind.evil.example:" + client.BaseAddress!.Port);
        }
    }

    [Fact]
    public async Task Foreign_origins_are_refused_on_the_native_api_and_the_registry()
    {
        using var native = new HttpRequestMessage(HttpMethod.Post, "api/registry/users")
        {
            Content = new StringContent("""{"name":"evil","password":"evil-password-1","rights":["admin"]}""", Encoding.UTF8, "text/plain"),
        };
        native.Headers.Add("Origin", "http://evil.example");
        using var nativeResponse = await flotilla.Native.SendAsync(native);
        Assert.Equal(HttpStatusCode.Forbidden, nativeResponse.StatusCode);
        using var users = await flotilla.Native.GetAsync("api/registry/users");
        Assert.DoesNotContain("\"evil\"", await users.Content.ReadAsStringAsync());

        using var registry = new HttpRequestMessage(HttpMethod.Post, "v2/anything/blobs/uploads/");
        registry.Headers.Add("Origin", "http://evil.example");
        using var registryResponse = await flotilla.Registry.SendAsync(registry);
        Assert.Equal(HttpStatusCode.Forbidden, registryResponse.StatusCode);
        Assert.Equal("DENIED", JsonDocument.Parse(await registryResponse.Content.ReadAsStringAsync()).RootElement
            .GetProperty("errors")[0].GetProperty("code").GetString());
        await AssertDeniedAsync("Registry", "/v2/anything/blobs/uploads/", "http://evil.example");
    }

    [Fact]
    public async Task A_hijacked_attach_from_a_foreign_origin_is_refused()
    {
        // Attach and exec start bypass Kestrel's HTTP layer; the guard must hold there too.
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, flotilla.DockerPort);
        var stream = tcp.GetStream();
        var head = "POST /v1.51/containers/anything/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
                   "Origin: http://evil.example\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head));
        using var reader = new StreamReader(stream);
        var status = await reader.ReadLineAsync();
        Assert.StartsWith("HTTP/1.1 403", status);
        await AssertDeniedAsync("DockerApi", "/v1.51/containers/anything/attach", "http://evil.example");
    }

    [Fact]
    public async Task The_real_docker_cli_still_works_over_tcp_and_the_socket()
    {
        var tcp = await flotilla.RunDockerAsync("ps", "-a");
        Assert.True(tcp.ExitCode == 0, tcp.ToString());
        var socket = await ProcessRunner.RunAsync(RunningFlotilla.DockerCli, ["-H", $"unix://{flotilla.DockerSocket}", "version"], TimeSpan.FromSeconds(60));
        Assert.True(socket.ExitCode == 0, socket.ToString());
        Assert.Contains("Server: Flotilla", socket.Stdout);
    }

    // ------------------------------------------------------------------ the unix socket

    [Fact]
    public async Task The_socket_is_0660_and_a_local_user_outside_its_group_cannot_connect()
    {
        var mode = File.GetUnixFileMode(flotilla.DockerSocket);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite, mode);
        if (DockerSocketFile.GroupId(DockerSocketFile.DockerGroup) is { } docker)
            Assert.Equal(docker, SocketGroup());

        var refused = await AsNobodyAsync([], "/usr/bin/python3", "-c",
            "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); print('connected')", flotilla.DockerSocket);
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("PermissionError", refused.Stderr);

        var root = await ProcessRunner.RunAsync("curl", ["-sS", "--unix-socket", flotilla.DockerSocket, "http://docker/_ping"]);
        Assert.True(root.ExitCode == 0 && root.Stdout == "OK", root.ToString());
    }

    [Fact]
    public void No_tcp_docker_api_for_local_users_by_default()
    {
        // `flotilla up` without --docker-api: the Docker API is on the socket only.
        var settings = new Flotilla.Cli.Hosting.UpSettings(null, "127.0.0.1:5000", "127.0.0.1:8080", "/tmp/x", null, null, null);
        var options = Flotilla.Cli.Commands.UpCommand.Create().Parse("").GetValue<string?>("--docker-api");
        Assert.Null(options);
        Assert.Null(settings.DockerApi);
    }

    [Fact]
    public async Task The_audit_user_on_the_socket_is_the_callers_uid()
    {
        var name = "uid-" + Guid.NewGuid().ToString("N")[..8];
        // nobody, let in through the socket's group as a member of the docker group would be.
        var created = await AsNobodyAsync([SocketGroup()], "curl", "-sS", "--fail-with-body", "--unix-socket", flotilla.DockerSocket,
            "-H", "Content-Type: application/json", "-d", """{"Image":"listenerbox:1","Cmd":["true"]}""",
            $"http://docker/v1.51/containers/create?name={name}");
        Assert.True(created.ExitCode == 0, created.ToString());
        var id = JsonDocument.Parse(created.Stdout).RootElement.GetProperty("Id").GetString()!;
        using var audit = await flotilla.Native.GetAsync($"api/audit?container={id}");
        var page = JsonDocument.Parse(await audit.Content.ReadAsStringAsync()).RootElement;
        var users = page.GetProperty("entries").EnumerateArray().Select(e => e.GetProperty("user").GetString()).Distinct().ToList();
        Assert.Equal(["uid:65534(nobody)"], users);
        await flotilla.RunDockerAsync("rm", "-f", name);
    }

    [Fact]
    public void A_docker_socket_path_holding_a_file_is_refused_and_left_alone()
    {
        var path = Path.Combine(flotilla.DataRoot, "not-a-socket-" + Guid.NewGuid().ToString("N")[..6]);
        File.WriteAllText(path, "precious");
        var error = Assert.Throws<ArgumentException>(() => DockerSocketFile.Prepare(path));
        Assert.Contains("not a socket", error.Message);
        Assert.Equal("precious", File.ReadAllText(path));
    }

    // ------------------------------------------------------------------ the native API's tokens

    [Fact]
    public async Task The_native_api_refuses_callers_without_a_token_and_records_them()
    {
        using var anonymous = new HttpClient { BaseAddress = flotilla.Native.BaseAddress };
        using var drain = await anonymous.PostAsync("api/nodes/gw-node/drain", null);
        Assert.Equal(HttpStatusCode.Unauthorized, drain.StatusCode);
        using var users = await anonymous.GetAsync("api/registry/users");
        Assert.Equal(HttpStatusCode.Unauthorized, users.StatusCode);
        anonymous.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "not-the-token-not-the-token-not-the-token");
        using var wrong = await anonymous.GetAsync("api/audit");
        Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
        await AssertDeniedAsync("NativeApi", "/api/nodes/gw-node/drain", null);

        var mode = File.GetUnixFileMode(NativeApiTokens.FileOf(flotilla.DataRoot, NativeRole.Admin));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, mode);
        Assert.Equal(mode, File.GetUnixFileMode(NativeApiTokens.FileOf(flotilla.DataRoot, NativeRole.Audit)));
    }

    [Fact]
    public async Task The_audit_token_reads_the_audit_log_and_changes_nothing()
    {
        using var auditor = new HttpClient { BaseAddress = flotilla.Native.BaseAddress };
        auditor.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", flotilla.NativeToken(NativeRole.Audit));
        using var read = await auditor.GetAsync("api/audit?limit=1");
        Assert.Equal(HttpStatusCode.OK, read.StatusCode);
        using var export = await auditor.GetAsync("api/audit/export?kind=container");
        Assert.Equal(HttpStatusCode.OK, export.StatusCode);
        using var add = await auditor.PostAsync("api/registry/users",
            new StringContent("""{"name":"auditor-made","password":"auditor-password-1","rights":["admin"]}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Forbidden, add.StatusCode);
        using var drain = await auditor.PostAsync("api/nodes/gw-node/drain", null);
        Assert.Equal(HttpStatusCode.Forbidden, drain.StatusCode);
        await AssertDeniedAsync("NativeApi", "/api/nodes/gw-node/drain", null, user: "token:audit");
    }

    [Fact]
    public async Task Changes_through_the_native_api_record_the_tokens_role_as_the_user()
    {
        var name = "tok" + Guid.NewGuid().ToString("N")[..8];
        using var add = await flotilla.Native.PostAsync("api/registry/users",
            new StringContent($$"""{"name":"{{name}}","password":"a-long-password-1","rights":["pull"]}""", Encoding.UTF8, "application/json"));
        Assert.True(add.IsSuccessStatusCode, await add.Content.ReadAsStringAsync());
        using var audit = await flotilla.Native.GetAsync($"api/audit?registry-user={name}");
        var entries = JsonDocument.Parse(await audit.Content.ReadAsStringAsync()).RootElement.GetProperty("entries").EnumerateArray().ToList();
        Assert.NotEmpty(entries);
        Assert.All(entries, e => Assert.Equal("token:admin", e.GetProperty("user").GetString()));
        using var remove = await flotilla.Native.DeleteAsync($"api/registry/users/{name}");
    }

    [Fact]
    public async Task The_flotilla_cli_finds_the_token_itself()
    {
        var cli = typeof(Flotilla.Cli.Commands.NodesCommand).Assembly.Location;
        var ok = await ProcessRunner.RunAsync("dotnet", [cli, "nodes", "--http", $"127.0.0.1:{flotilla.HttpPort}"], env: flotilla.CliEnvironment);
        Assert.True(ok.ExitCode == 0, ok.ToString());
        var elsewhere = await ProcessRunner.RunAsync("dotnet", [cli, "nodes", "--http", $"127.0.0.1:{flotilla.HttpPort}"],
            env: new Dictionary<string, string> { ["FLOTILLA_DATA"] = Path.Combine(flotilla.DataRoot, "no-such-dir") });
        Assert.Equal(1, elsewhere.ExitCode);
        Assert.Contains("401", elsewhere.Stderr);
    }

    // ------------------------------------------------------------------ helpers

    private int SocketGroup()
    {
        var stat = ProcessRunner.RunAsync("stat", ["-c", "%g", flotilla.DockerSocket]).GetAwaiter().GetResult();
        return int.Parse(stat.Stdout.Trim(), System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Runs a command as user nobody (uid 65534), with only the supplementary groups given.</summary>
    private static Task<ProcessResult> AsNobodyAsync(int[] groups, params string[] command) =>
        ProcessRunner.RunAsync("setpriv", ["--reuid=65534", "--regid=65534",
            groups.Length == 0 ? "--clear-groups" : "--groups=" + string.Join(',', groups), "--", .. command]);

    private async Task AssertDeniedAsync(string listener, string? path, string? origin, string? host = null, string? user = null)
    {
        var found = await Eventually.TrueAsync(async () =>
        {
            using var response = await flotilla.Native.GetAsync("api/audit?kind=api-access&limit=500&order=desc");
            var page = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
            return page.GetProperty("entries").EnumerateArray().Any(e =>
            {
                var data = e.GetProperty("data");
                return Field(data, "Listener") == listener &&
                       (path is null || Field(data, "Path") == path) &&
                       (origin is null || Field(data, "Origin") == origin) &&
                       (host is null || Field(data, "Host") == host) &&
                       (user is null || e.GetProperty("user").GetString() == user);
            });
        }, TimeSpan.FromSeconds(10));
        Assert.True(found, $"no api-access denial recorded for {listener} {path} {origin} {host} {user}");
    }

    /// <summary>An event body's field, whatever the store's casing.</summary>
    private static string? Field(JsonElement data, string name) =>
        data.EnumerateObject().FirstOrDefault(p => p.Name.Equals(name, StringComparison.OrdinalIgnoreCase)).Value is { ValueKind: JsonValueKind.String } v
            ? v.GetString() : null;

    private static string Message(string body) => JsonDocument.Parse(body).RootElement.GetProperty("message").GetString()!;
}
