using System.Net;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Flotilla.Cluster.Security;
using Flotilla.Contracts.Security;
using Flotilla.Gateway.Forwarding;
using Flotilla.Tests.Support;
using Xunit;

namespace Flotilla.Tests.Gateway;

/// <summary>
/// Strangers on a node's own API (a node of <see cref="GatewayAndNode"/>: HTTPS with required client certificates of the
/// cluster CA). Before, it served the whole Docker API in plain HTTP to anyone (<c>docker -H tcp://node:2376 run
/// --privileged</c>). Now: plain HTTP, TLS without a certificate, and a certificate of another CA get nothing, not even
/// a peer blob, and are recorded; a node's certificate fetches blobs only; a gateway's (the control) is served. And
/// <c>X-Flotilla-Forwarded-For</c> is believed only from a gateway's certificate, not from a cluster address.
/// </summary>
public class NodeApiIntruderSpec(GatewayAndNode cluster) : IClassFixture<GatewayAndNode>
{
    private const string CreateBody = """{"Image":"remotebox:1","Cmd":["true"],"HostConfig":{"Privileged":true,"Binds":["/:/host"]}}""";
    private const string SomeBlob = "/_flotilla/peer/v1/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000";

    private HttpClient Client(X509Certificate2? clientCertificate, bool tls = true)
    {
        var handler = new SocketsHttpHandler { UseProxy = false, ConnectTimeout = TimeSpan.FromSeconds(5) };
        handler.SslOptions = new SslClientAuthenticationOptions
        {
            // The stranger does not care who the server is; the server must care who the stranger is.
            RemoteCertificateValidationCallback = (_, _, _, _) => true,
            ClientCertificates = clientCertificate is null ? null : [clientCertificate],
        };
        return new HttpClient(handler)
        {
            BaseAddress = new Uri($"{(tls ? "https" : "http")}://127.0.0.1:{cluster.NodePort}/"),
            Timeout = TimeSpan.FromSeconds(15),
        };
    }

    private static async Task<string> TryAsync(HttpClient http, HttpMethod method, string path, string? body = null)
    {
        try
        {
            using var request = new HttpRequestMessage(method, path);
            if (body is not null) request.Content = new StringContent(body, Encoding.UTF8, "application/json");
            using var response = await http.SendAsync(request);
            return $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}";
        }
        catch (HttpRequestException e)
        {
            return "refused: " + e.Message;
        }
    }

    private async Task<List<ClusterAccessDenied>> DenialsAsync(string process)
    {
        await using var store = cluster.OpenStore();
        await using var session = store.QuerySession();
        var events = await session.Events.FetchStreamAsync(ClusterAccessStreams.Key(process));
        return [.. events.Select(e => e.Data).OfType<ClusterAccessDenied>()];
    }

    [Fact]
    public async Task A_stranger_on_the_node_API_creates_nothing_and_fetches_no_blob_and_is_recorded()
    {
        using var foreignCa = ClusterCa.Create("the intruder's CA");
        var strangers = new (string Who, HttpClient Http)[]
        {
            ("plain HTTP", Client(null, tls: false)),
            ("TLS without a certificate", Client(null)),
            ("a certificate of another CA", Client(ClusterPkiFiles.Reload(foreignCa.Issue(ClusterRole.Gateway, "intruder-gw", ["127.0.0.1"])))),
        };
        foreach (var (who, http) in strangers)
        {
            using (http)
            {
                var create = await TryAsync(http, HttpMethod.Post, "v1.51/containers/create", CreateBody);
                Assert.True(create.StartsWith("refused", StringComparison.Ordinal) || create.StartsWith('4'), $"{who}: container create answered {create}");
                Assert.DoesNotContain("\"Id\"", create);
                var blob = await TryAsync(http, HttpMethod.Get, SomeBlob);
                Assert.True(blob.StartsWith("refused", StringComparison.Ordinal) || blob.StartsWith("400", StringComparison.Ordinal), $"{who}: peer blob answered {blob}");
            }
        }

        // A node's certificate of this cluster: blobs yes (this one is not here), containers no.
        using (var node = Client(ClusterPkiFiles.Reload(cluster.Ca.Issue(ClusterRole.Node, "node-z", ["127.0.0.1"]))))
        {
            Assert.StartsWith("404", await TryAsync(node, HttpMethod.Get, SomeBlob));
            Assert.StartsWith("403", await TryAsync(node, HttpMethod.Post, "v1.51/containers/create", CreateBody));
        }
        // Control: a gateway's certificate is served (so the refusals above are the certificates' doing).
        using (var gateway = Client(ClusterPkiFiles.Reload(cluster.Ca.Issue(ClusterRole.Gateway, "gw-control", ["127.0.0.1"]))))
            Assert.StartsWith("200", await TryAsync(gateway, HttpMethod.Get, "_ping"));

        List<ClusterAccessDenied> denials = [];
        Assert.True(await Eventually.TrueAsync(async () =>
        {
            denials = (await DenialsAsync("node-a")).Where(d => d.Surface == ClusterSurfaces.NodeApi).ToList();
            return denials.Any(d => d.Reason.Contains("no certificate")) && denials.Any(d => d.Subject?.Contains("intruder-gw") == true)
                && denials.Any(d => d.Subject?.Contains("node-z") == true);
        }, TimeSpan.FromSeconds(10)), "refusals recorded: " + string.Join("; ", denials.Select(d => $"{d.RemoteAddress} {d.Subject}: {d.Reason}")));
    }

    /// <summary>
    /// Plain TCP on the TLS-only listeners: before, Kestrel and Akka refused these handshakes with a debug log line only,
    /// so a stranger probing the cluster's ports left no event. Sent from 127.0.0.3 so that the recorded address is the
    /// stranger's and nobody else's.
    /// </summary>
    [Fact]
    public async Task Plain_tcp_and_garbage_on_the_node_API_the_peer_API_and_the_cluster_port_are_recorded_with_the_source()
    {
        var stranger = IPAddress.Parse("127.0.0.3");
        var probes = new (string Process, int Port, string Surface, byte[] Bytes, string Reason)[]
        {
            ("node-a", cluster.NodePort, ClusterSurfaces.NodeApi, "GET /v1.51/containers/json HTTP/1.1\r\nHost: x\r\n\r\n"u8.ToArray(), "plain HTTP on the TLS port"),
            ("node-a", cluster.NodePort, ClusterSurfaces.NodeApi, [0x00, 0x01, 0x02, 0xff, 0xfe, 0x10, 0x20, 0x30], "not a TLS handshake (plain TCP)"),
            ("gw-b", cluster.GatewayPeerPort, ClusterSurfaces.PeerApi, [0x42, 0x42, 0x42, 0x42, 0x0a], "not a TLS handshake (plain TCP)"),
            ("node-a", cluster.NodeClusterPort, ClusterSurfaces.Transport, [0x00, 0x00, 0x00, 0x10, 0xde, 0xad, 0xbe, 0xef, 0x01], "not a TLS handshake (plain TCP)"),
        };
        foreach (var probe in probes)
        {
            using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
            socket.Bind(new IPEndPoint(stranger, 0));
            await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, probe.Port));
            await socket.SendAsync(probe.Bytes);
            // The listener answers nothing it could be talked into and closes (or leaves the stranger hanging); either way no HTTP.
            var answer = new byte[256];
            var read = await socket.ReceiveAsync(answer).WaitAsync(TimeSpan.FromSeconds(10)).ContinueWith(t => t.IsCompletedSuccessfully ? t.Result : 0);
            Assert.DoesNotContain("HTTP/1.1 200", Encoding.ASCII.GetString(answer, 0, read));
        }

        foreach (var probe in probes)
        {
            List<ClusterAccessDenied> denials = [];
            Assert.True(await Eventually.TrueAsync(async () =>
            {
                denials = await DenialsAsync(probe.Process);
                return denials.Any(d => d.Surface == probe.Surface && d.RemoteAddress == "127.0.0.3" && d.Reason == probe.Reason);
            }, TimeSpan.FromSeconds(10)), $"{probe.Surface} on {probe.Port}: '{probe.Reason}' from 127.0.0.3 not recorded; recorded: "
                + string.Join("; ", denials.Select(d => $"{d.Surface} {d.RemoteAddress}: {d.Reason}")));
        }
    }

    [Fact]
    public async Task Forwarded_identity_is_believed_from_a_gateway_certificate_only()
    {
        // From a cluster address (the gateway's own Docker API is on 127.0.0.1, which both processes registered) without
        // a gateway certificate: ignored, recorded. Before, a registered address was enough.
        using (var local = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{cluster.GatewayPort}/") })
        {
            var id = await CreateAsync(local, "mallory-forged");
            Assert.Equal("anonymous@127.0.0.1", await CreatorAsync(id));
        }
        Assert.True(await Eventually.TrueAsync(async () => (await DenialsAsync("gw-b")).Any(d => d.Surface == ClusterSurfaces.ForwardedIdentity),
            TimeSpan.FromSeconds(10)), "the ignored header is recorded");

        // From a gateway of the cluster (its certificate, on the node's API): believed.
        using var gateway = Client(ClusterPkiFiles.Reload(cluster.Ca.Issue(ClusterRole.Gateway, "gw-forwarding", ["127.0.0.1"])));
        var forwarded = await CreateAsync(gateway, "alice@10.9.8.7");
        Assert.Equal("alice@10.9.8.7", await CreatorAsync(forwarded));
    }

    private static async Task<string> CreateAsync(HttpClient http, string forwardedFor)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1.51/containers/create")
        {
            Content = new StringContent("""{"Image":"remotebox:1","Cmd":["true"]}""", Encoding.UTF8, "application/json"),
        };
        request.Headers.Add(NodeForwarder.ForwardedHeader, "gw-b");
        request.Headers.Add(CallerIdentity.ForwardedForHeader, forwardedFor);
        using var response = await http.SendAsync(request);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Created, body);
        return System.Text.Json.JsonDocument.Parse(body).RootElement.GetProperty("Id").GetString()!;
    }

    private async Task<string?> CreatorAsync(string id)
    {
        await using var store = cluster.OpenStore();
        await using var session = store.QuerySession();
        var events = await session.Events.FetchStreamAsync("container-" + id);
        return events.First(e => e.EventTypeName == "container_created").UserName;
    }
}

/// <summary>The Swarm-classic <c>Node</c> section of inspect shows the node's address, not the <c>https://</c> it registered.</summary>
public class NodeSectionSpec(GatewayAndNode cluster) : IClassFixture<GatewayAndNode>
{
    [Fact]
    public async Task Inspect_shows_the_node_address_without_its_scheme()
    {
        var inspect = await cluster.GatewayOk("inspect", "-f", "{{.Node.IP}} {{.Node.Addr}}", GatewayAndNode.Sleeper);
        Assert.Equal($"127.0.0.1 127.0.0.1:{cluster.NodePort}", inspect.Trim());
    }
}
