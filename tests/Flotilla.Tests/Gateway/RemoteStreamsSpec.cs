using System.Formats.Tar;
using System.Net;
using System.Text;
using System.Text.Json;
using Akka.Actor;
using Flotilla.Cli.Hosting;
using Flotilla.Cluster.Hosting;
using Flotilla.Cluster.Nodes;
using Flotilla.Cluster.Queries;
using Flotilla.Cluster.Security;
using Flotilla.NodeRuntime.Host;
using Flotilla.Tests.Infrastructure;
using Flotilla.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Flotilla.Tests.Gateway;

/// <summary>
/// Two Flotilla processes in this test process over one database: <c>node-a</c> (roles [node], its own Docker API)
/// and <c>gw-b</c> (roles [gateway], no container runtime) joined to it. Containers are made on A; B serves them.
/// </summary>
public sealed class GatewayAndNode : IAsyncLifetime
{
    public const string Image = "remotebox:1";
    public const string Sleeper = "remote-sleeper";

    private readonly PostgresFixture _postgres = new();
    private WebApplication? _node;
    private WebApplication? _gateway;

    public int NodePort { get; } = FreePort.Next();
    public int GatewayPort { get; } = FreePort.Next();
    /// <summary>The gateway's peer API (blobs imported through it; mutual TLS).</summary>
    public int GatewayPeerPort { get; } = FreePort.Next();
    /// <summary>The node's Akka.Remote port (TLS).</summary>
    public int NodeClusterPort { get; } = FreePort.Next();
    public string Root { get; } = Path.Combine(Path.GetTempPath(), "flotilla-remote-" + Guid.NewGuid().ToString("N")[..8]);
    public bool NodeStopped { get; private set; }

    /// <summary>The cluster CA: node and gateway talk over mutual TLS (Akka.Remote and the node's API).</summary>
    public ClusterCa Ca { get; } = ClusterCa.Create();

    /// <summary>An operator's gateway-role certificate for the docker CLI against the node's own API (ca.pem, cert.pem, key.pem).</summary>
    public string OperatorCerts => Path.Combine(Root, "operator");

    public string[] NodeTlsFlags => ["--tlsverify", "--tlscacert", Path.Combine(OperatorCerts, "ca.pem"),
        "--tlscert", Path.Combine(OperatorCerts, "cert.pem"), "--tlskey", Path.Combine(OperatorCerts, "key.pem")];
    public string ConnectionString { get; private set; } = "";

    /// <summary>A Marten store on the cluster's database, to look at the events themselves.</summary>
    public Marten.DocumentStore OpenStore() => Flotilla.Cluster.EventStore.FlotillaStore.Create(ConnectionString);

    public async Task InitializeAsync()
    {
        await _postgres.InitializeAsync();
        var connectionString = ConnectionString = await _postgres.NewDatabaseAsync("remote");
        var nodeCluster = NodeClusterPort;
        var facts = await HostFacts.ProbeAsync(null);
        ClusterPkiFiles.SaveIdentity(OperatorCerts, Ca.Issue(ClusterRole.Gateway, "operator", []));
        await File.WriteAllTextAsync(Path.Combine(OperatorCerts, "ca.pem"), Ca.Certificate.ExportCertificatePem());

        _node = FlotillaProcess.Build(new ProcessSettings
        {
            NodeName = "node-a",
            Roles = [FlotillaClusterOptions.NodeRole],
            DataRoot = Path.Combine(Root, "a"),
            DockerApi = new IPEndPoint(IPAddress.Loopback, NodePort),
            BindPort = nodeCluster,
            Tls = new ClusterTls(Ca.Issue(ClusterRole.Node, "node-a", ["127.0.0.1"]), Ca.Certificate),
            StableAfter = TimeSpan.FromSeconds(2),
        }, connectionString, facts);
        await _node.StartAsync();
        await AllInOneHost.WhenMemberUp(_node.Services.GetRequiredService<ActorSystem>()).WaitAsync(TimeSpan.FromSeconds(30));

        _gateway = FlotillaProcess.Build(new ProcessSettings
        {
            NodeName = "gw-b",
            Roles = [FlotillaClusterOptions.GatewayRole],
            DataRoot = Path.Combine(Root, "b"),
            DockerApi = new IPEndPoint(IPAddress.Loopback, GatewayPort),
            PeerApi = new IPEndPoint(IPAddress.Loopback, GatewayPeerPort),
            BindPort = FreePort.Next(),
            Seeds = [$"127.0.0.1:{nodeCluster}"],
            Tls = new ClusterTls(Ca.Issue(ClusterRole.Gateway, "gw-b", ["127.0.0.1"]), Ca.Certificate),
            StableAfter = TimeSpan.FromSeconds(2),
        }, connectionString, facts);
        await _gateway.StartAsync();
        await AllInOneHost.WhenMemberUp(_gateway.Services.GetRequiredService<ActorSystem>()).WaitAsync(TimeSpan.FromSeconds(30));

        var queries = _gateway.Services.GetRequiredService<ClusterQueries>();
        Assert.True(await Eventually.TrueAsync(async () =>
            (await queries.NodesAsync()).Any(n => n.Name == "node-a" && n.Status == NodeStatus.Ready && n.ApiEndpoint == $"https://127.0.0.1:{NodePort}"),
            TimeSpan.FromSeconds(20)), "the gateway sees node-a and its Docker API");

        Directory.CreateDirectory(Root);
        var rootfs = Path.Combine(Root, "rootfs.tar");
        await File.WriteAllBytesAsync(rootfs, BusyboxImage.Rootfs());
        await NodeOk("import", "-c", "CMD [\"/bin/sh\"]", rootfs, Image);
        await NodeOk("run", "-d", "--name", Sleeper, Image, "sleep", "600");
    }

    public async Task DisposeAsync()
    {
        if (_node is not null && !NodeStopped) await DataRootCleanup.RemoveContainersAsync(NodePort, NodeTlsFlags);
        if (_gateway is not null)
        {
            await _gateway.StopAsync();
            await _gateway.DisposeAsync();
        }
        if (_node is not null)
        {
            if (!NodeStopped) await _node.StopAsync();
            await _node.DisposeAsync();
        }
        await _postgres.DisposeAsync();
        await DataRootCleanup.DeleteAsync(Root);
    }

    /// <summary>An HTTPS client of node A's own API with a gateway certificate of the cluster (as a gateway that forwards).</summary>
    public HttpClient NodeHttp()
    {
        var tls = new ClusterTls(Ca.Issue(ClusterRole.Gateway, "test-gateway", []), Ca.Certificate);
        var handler = new SocketsHttpHandler { UseProxy = false };
        ClusterHttps.Configure(handler, tls);
        return new HttpClient(handler) { BaseAddress = new Uri($"https://127.0.0.1:{NodePort}/") };
    }

    /// <summary>Node A leaves the cluster (its process stops).</summary>
    public async Task StopNodeAsync()
    {
        NodeStopped = true;
        await _node!.StopAsync();
    }

    private Dictionary<string, string> Env(int port)
    {
        var env = new Dictionary<string, string>
        {
            ["DOCKER_HOST"] = $"tcp://127.0.0.1:{port}",
            ["DOCKER_CONFIG"] = Path.Combine(Root, "docker-config"),
        };
        if (port != NodePort) return env;
        // The node's API takes only cluster certificates: the docker CLI presents the operator's.
        env["DOCKER_TLS_VERIFY"] = "1";
        env["DOCKER_CERT_PATH"] = OperatorCerts;
        return env;
    }

    /// <summary>The docker CLI against node A's own Docker API.</summary>
    public Task<ProcessResult> OnNodeAsync(params string[] args) =>
        ProcessRunner.RunAsync("docker", args, TimeSpan.FromSeconds(60), Env(NodePort));

    /// <summary>The docker CLI against the gateway.</summary>
    public Task<ProcessResult> OnGatewayAsync(params string[] args) =>
        ProcessRunner.RunAsync("docker", args, TimeSpan.FromSeconds(60), Env(GatewayPort));

    /// <summary>A shell line with the docker CLI pointed at the gateway (pipes for stdin).</summary>
    public Task<ProcessResult> ShOnGatewayAsync(string script) =>
        ProcessRunner.RunAsync("/bin/sh", ["-c", script], TimeSpan.FromSeconds(60), Env(GatewayPort));

    public async Task<string> NodeOk(params string[] args)
    {
        var result = await OnNodeAsync(args);
        Assert.True(result.ExitCode == 0, $"docker (node-a) {string.Join(' ', args)}: {result}");
        return result.Stdout;
    }

    public async Task<string> GatewayOk(params string[] args)
    {
        var result = await OnGatewayAsync(args);
        Assert.True(result.ExitCode == 0, $"docker (gw-b) {string.Join(' ', args)}: {result}");
        return result.Stdout;
    }
}

/// <summary>Container data-plane requests (logs, exec, attach, export, cp, top, stats, diff) through a gateway that runs no containers.</summary>
[TestCaseOrderer(RunsLastOrderer.TypeName, RunsLastOrderer.AssemblyName)]
public class RemoteStreamsSpec(GatewayAndNode cluster) : IClassFixture<GatewayAndNode>
{
    private const string Sleeper = GatewayAndNode.Sleeper;

    [Fact]
    public async Task Logs_come_from_the_node_and_follow_ends_when_the_container_exits()
    {
        await cluster.NodeOk("run", "-d", "--name", "remote-logs", GatewayAndNode.Image, "sh", "-c", "echo one; echo two >&2; sleep 2; echo three");
        var follow = cluster.OnGatewayAsync("logs", "-f", "remote-logs");

        Assert.True(await Eventually.TrueAsync(async () => (await cluster.OnGatewayAsync("logs", "remote-logs")).Stdout.Contains("one"),
            TimeSpan.FromSeconds(10)), "logs through the gateway");
        var logs = await cluster.OnGatewayAsync("logs", "remote-logs");
        Assert.True(logs.ExitCode == 0, logs.ToString());
        Assert.StartsWith("one\n", logs.Stdout);
        Assert.Equal("two\n", logs.Stderr);

        var followed = await follow.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.True(followed.ExitCode == 0, followed.ToString());
        Assert.Equal("one\nthree\n", followed.Stdout);
        Assert.Equal("two\n", followed.Stderr);
    }

    [Fact]
    public async Task Exec_runs_on_the_node_with_its_exit_code_and_piped_stdin()
    {
        var plain = await cluster.OnGatewayAsync("exec", Sleeper, "sh", "-c", "echo out; echo err >&2; exit 7");
        Assert.Equal(7, plain.ExitCode);
        Assert.Equal("out\n", plain.Stdout);
        Assert.Equal("err\n", plain.Stderr);

        var piped = await cluster.ShOnGatewayAsync($"printf 'one\\ntwo\\n' | docker exec -i {Sleeper} cat");
        Assert.True(piped.ExitCode == 0, piped.ToString());
        Assert.Equal("one\ntwo\n", piped.Stdout);

        // Stdin's end reaches the process (half-close through the relay), and what it prints after that still comes back.
        var counted = await cluster.ShOnGatewayAsync($"seq 1 20000 | docker exec -i {Sleeper} sh -c 'wc -l; exit 3'");
        Assert.Equal(3, counted.ExitCode);
        Assert.Equal("20000", counted.Stdout.Trim());

        // Output larger than any buffer on the way comes back whole.
        var many = await cluster.OnGatewayAsync("exec", Sleeper, "seq", "1", "100000");
        Assert.True(many.ExitCode == 0, many.ToString()[..Math.Min(many.ToString().Length, 2000)]);
        Assert.Equal(100000, many.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.EndsWith("\n100000\n", many.Stdout);

        var missing = await cluster.OnGatewayAsync("exec", Sleeper, "no-such-command");
        Assert.Equal(127, missing.ExitCode);

        // A TTY exec: raw bytes through the relay.
        var tty = await cluster.OnGatewayAsync("exec", "-t", Sleeper, "echo", "hi");
        Assert.True(tty.ExitCode == 0, tty.ToString());
        Assert.Equal("hi\r\n", tty.Stdout);

        // Detached: the start is a plain request, forwarded to the node that holds the exec.
        await cluster.GatewayOk("exec", "-d", Sleeper, "touch", "/tmp/detached");
        Assert.True(await Eventually.TrueAsync(async () => (await cluster.OnNodeAsync("exec", Sleeper, "test", "-f", "/tmp/detached")).ExitCode == 0,
            TimeSpan.FromSeconds(10)), "the detached exec ran on the node");
    }

    [Fact]
    public async Task Unknown_exec_ids_are_not_found()
    {
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{cluster.GatewayPort}/") };
        using var response = await http.GetAsync("v1.51/exec/" + new string('f', 64) + "/json");
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Contains("No such exec instance", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task An_exec_the_gateway_never_saw_is_found_on_the_node_that_holds_it()
    {
        // Created on the node itself (as through another gateway): this gateway has no record of it.
        using var node = cluster.NodeHttp();
        async Task<string> CreateExecAsync(string script)
        {
            using var created = await node.PostAsync($"v1.51/containers/{Sleeper}/exec", new StringContent(
                JsonSerializer.Serialize(new { AttachStdout = true, AttachStderr = true, Cmd = new[] { "sh", "-c", script } }), Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);
            using var json = JsonDocument.Parse(await created.Content.ReadAsStringAsync());
            return json.RootElement.GetProperty("Id").GetString()!;
        }

        using var gateway = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{cluster.GatewayPort}/") };
        var detached = await CreateExecAsync("touch /tmp/found-elsewhere");
        using (var inspect = await gateway.GetAsync($"v1.51/exec/{detached}/json"))
        {
            Assert.Equal(HttpStatusCode.OK, inspect.StatusCode);
            using var json = JsonDocument.Parse(await inspect.Content.ReadAsStringAsync());
            Assert.Equal(detached, json.RootElement.GetProperty("ID").GetString());
        }
        using (var start = await gateway.PostAsync($"v1.51/exec/{detached[..12]}/start",
                   new StringContent("{\"Detach\":true}", Encoding.UTF8, "application/json")))
            Assert.Equal(HttpStatusCode.OK, start.StatusCode);
        Assert.True(await Eventually.TrueAsync(async () => (await cluster.OnNodeAsync("exec", Sleeper, "test", "-f", "/tmp/found-elsewhere")).ExitCode == 0,
            TimeSpan.FromSeconds(10)), "the exec found on the node ran there");

        // An attached start is a hijacked stream: relayed to the node as well, output and all.
        var attached = await CreateExecAsync("echo found-and-attached");
        using var tcp = new System.Net.Sockets.TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, cluster.GatewayPort);
        var stream = tcp.GetStream();
        var body = "{\"Detach\":false,\"Tty\":false}";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(
            $"POST /v1.51/exec/{attached}/start HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n" +
            $"Content-Type: application/json\r\nContent-Length: {body.Length}\r\n\r\n{body}"));
        using var read = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var received = new MemoryStream();
        await stream.CopyToAsync(received, read.Token);
        var text = Encoding.Latin1.GetString(received.ToArray());
        Assert.StartsWith("HTTP/1.1 101", text);
        Assert.Contains("found-and-attached\n", text);
    }

    [Fact]
    public async Task A_request_that_was_forwarded_once_is_not_forwarded_again()
    {
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{cluster.GatewayPort}/") };
        using var request = new HttpRequestMessage(HttpMethod.Get, $"v1.51/containers/{Sleeper}/top");
        request.Headers.Add(Flotilla.Gateway.Forwarding.NodeForwarder.ForwardedHeader, "some-gateway");
        using var response = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Contains("node node-a is not available", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Docker_run_through_the_gateway_attaches_on_the_node_it_is_placed_on()
    {
        var run = await cluster.OnGatewayAsync("run", "--rm", GatewayAndNode.Image, "sh", "-c", "echo out; echo err >&2; exit 4");
        Assert.True(run.ExitCode == 4, run.ToString());
        Assert.Equal("out\n", run.Stdout);
        Assert.Equal("err\n", run.Stderr);

        var piped = await cluster.ShOnGatewayAsync($"printf 'one\\ntwo\\n' | docker run -i --rm {GatewayAndNode.Image} cat");
        Assert.True(piped.ExitCode == 0, piped.ToString());
        Assert.Equal("one\ntwo\n", piped.Stdout);
    }

    [Fact]
    public async Task Attach_shows_the_output_and_exit_code_of_a_container_on_the_node()
    {
        await cluster.NodeOk("run", "-d", "--name", "remote-attach", GatewayAndNode.Image, "sh", "-c", "sleep 3; echo attached-output; exit 3");
        var attach = await cluster.OnGatewayAsync("attach", "--no-stdin", "remote-attach");
        Assert.True(attach.ExitCode == 3, attach.ToString());
        Assert.Contains("attached-output", attach.Stdout);
    }

    [Fact]
    public async Task Export_streams_the_rootfs_of_a_container_on_the_node()
    {
        var file = Path.Combine(cluster.Root, "export.tar");
        await cluster.GatewayOk("export", "-o", file, Sleeper);
        var names = new List<string>();
        await using (var tar = new TarReader(File.OpenRead(file)))
            while (await tar.GetNextEntryAsync() is { } entry) names.Add(entry.Name);
        Assert.Contains("hello.txt", names);
        Assert.Contains("bin/busybox", names);
    }

    [Fact]
    public async Task Cp_copies_both_ways_and_diff_lists_the_changes()
    {
        var local = Path.Combine(cluster.Root, "cp-in.txt");
        await File.WriteAllTextAsync(local, "copied through the gateway\n");
        await cluster.GatewayOk("cp", local, $"{Sleeper}:/tmp/cp-in.txt");
        Assert.Equal("copied through the gateway\n", await cluster.NodeOk("exec", Sleeper, "cat", "/tmp/cp-in.txt"));

        var back = Path.Combine(cluster.Root, "cp-out.txt");
        await cluster.GatewayOk("cp", $"{Sleeper}:/hello.txt", back);
        Assert.Equal("hello from flotilla\n", await File.ReadAllTextAsync(back));

        await cluster.NodeOk("exec", Sleeper, "rm", "/bin/tty");
        var diff = await cluster.GatewayOk("diff", Sleeper);
        var lines = diff.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains("C /tmp", lines);
        Assert.Contains("A /tmp/cp-in.txt", lines);
        Assert.Contains("C /bin", lines);
        Assert.Contains("D /bin/tty", lines);
    }

    [Fact]
    public async Task Commit_through_the_gateway_makes_an_image_from_the_containers_changes()
    {
        await cluster.NodeOk("exec", Sleeper, "sh", "-c", "echo committed > /tmp/committed.txt");
        var id = (await cluster.GatewayOk("commit", Sleeper, "remotebox:committed")).Trim();
        Assert.StartsWith("sha256:", id);
        var run = await cluster.NodeOk("run", "--rm", "remotebox:committed", "cat", "/tmp/committed.txt");
        Assert.Equal("committed\n", run);
    }

    [Fact]
    public async Task A_forwarded_request_keeps_its_query_its_correlation_and_the_clients_request_id()
    {
        var id = (await cluster.NodeOk("inspect", "-f", "{{.Id}}", Sleeper)).Trim();
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{cluster.GatewayPort}/") };
        string correlation;
        using (var request = new HttpRequestMessage(HttpMethod.Get, $"v1.41/containers/{Sleeper}/export"))
        {
            request.Headers.Add("X-Request-Id", "remote-trace-1");
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("application/x-tar", response.Content.Headers.ContentType?.ToString());
            Assert.Equal("remote-trace-1", response.Headers.GetValues("X-Request-Id").Single());
            correlation = response.Headers.GetValues("X-Flotilla-Correlation-Id").Single();
            Assert.NotEqual("remote-trace-1", correlation);
            await response.Content.CopyToAsync(Stream.Null);
        }
        // The node recorded the export in the gateway's story, with the client's id as its causation.
        await using (var store = cluster.OpenStore())
        await using (var session = store.QuerySession())
        {
            var events = await session.Events.FetchStreamAsync("container-" + id);
            Assert.Contains(events, e => e.EventTypeName == "container_exported" && e.CorrelationId == correlation && e.CausationId == "remote-trace-1");
        }

        // The query goes along: tail=1 of a log with two lines.
        await cluster.NodeOk("run", "-d", "--name", "remote-tail", GatewayAndNode.Image, "sh", "-c", "echo first; echo last");
        Assert.True(await Eventually.TrueAsync(async () => (await cluster.OnGatewayAsync("logs", "remote-tail")).Stdout == "first\nlast\n",
            TimeSpan.FromSeconds(10)), "both lines logged");
        var tail = await http.GetByteArrayAsync("v1.41/containers/remote-tail/logs?stdout=1&tail=1");
        Assert.Equal("last\n", System.Text.Encoding.UTF8.GetString(tail.AsSpan(8)));
    }

    [Fact]
    public async Task Top_and_stats_read_the_container_on_its_node()
    {
        var top = await cluster.GatewayOk("top", Sleeper);
        Assert.Contains("sleep 600", top);

        var stats = await cluster.GatewayOk("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", Sleeper);
        Assert.StartsWith(Sleeper + " ", stats.Trim());
    }

    [Fact]
    [RunsLast]
    public async Task A_node_that_is_gone_is_reported_as_not_available()
    {
        await DataRootCleanup.RemoveContainersAsync(cluster.NodePort);
        await cluster.NodeOk("create", "--name", "remote-orphan", GatewayAndNode.Image, "true");
        await cluster.StopNodeAsync();

        // (docker logs would inspect the container first: that asks its entity, which has no node to live on now.)
        var export = await cluster.OnGatewayAsync("export", "-o", Path.Combine(cluster.Root, "orphan.tar"), "remote-orphan");
        Assert.NotEqual(0, export.ExitCode);
        Assert.Contains("Error response from daemon: node node-a is not available", export.Stderr);

        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{cluster.GatewayPort}/") };
        using var response = await http.GetAsync("v1.51/containers/remote-orphan/logs?stdout=1&follow=1");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.ToString());
        Assert.Contains("node node-a is not available", await response.Content.ReadAsStringAsync());
    }
}
