using System.Net;
using Flotilla.Cli.Hosting;
using Flotilla.Cluster.Hosting;
using Flotilla.Cluster.Security;
using Xunit;

namespace Flotilla.Tests.Hosting;

/// <summary>
/// Issue 15 item 2: what a process registers as where its image content lives (<c>NodeJoined.ApiEndpoint</c>) is an
/// address for other hosts — never a gateway's Docker API, which is its clients' and often on loopback.
/// </summary>
public sealed class RegisteredEndpointSpec
{
    private static readonly ClusterCa Ca = ClusterCa.Create();

    private static ProcessSettings Gateway(IPEndPoint? peerApi) => new()
    {
        NodeName = "gateway-vm",
        Roles = [FlotillaClusterOptions.GatewayRole],
        DataRoot = "/nonexistent",
        BindHost = "10.0.0.1",
        BindPort = 4060,
        DockerApi = IPEndPoint.Parse("127.0.0.1:2375"),
        PeerApi = peerApi,
        Tls = new ClusterTls(Ca.Issue(ClusterRole.Gateway, "gateway-vm", ["10.0.0.1"]), Ca.Certificate),
    };

    [Fact]
    public void A_gateway_registers_its_peer_api_on_its_cluster_address()
    {
        Assert.Equal("https://10.0.0.1:2377", FlotillaProcess.RegisteredEndpoint(Gateway(IPEndPoint.Parse("10.0.0.1:2377"))));
        // A peer listener on every address is dialled at the cluster address.
        Assert.Equal("https://10.0.0.1:2377", FlotillaProcess.RegisteredEndpoint(Gateway(IPEndPoint.Parse("0.0.0.0:2377"))));
    }

    [Fact]
    public void A_gateway_without_a_peer_api_registers_nothing_not_its_loopback_docker_api()
    {
        Assert.Equal("", FlotillaProcess.RegisteredEndpoint(Gateway(null)));
    }

    [Fact]
    public void A_node_registers_its_node_api()
    {
        var node = new ProcessSettings
        {
            NodeName = "n1",
            Roles = [FlotillaClusterOptions.NodeRole],
            DataRoot = "/nonexistent",
            BindHost = "10.0.0.11",
            BindPort = 4053,
            DockerApi = IPEndPoint.Parse("10.0.0.11:2376"),
            Tls = new ClusterTls(Ca.Issue(ClusterRole.Node, "n1", ["10.0.0.11"]), Ca.Certificate),
        };
        Assert.Equal("https://10.0.0.11:2376", FlotillaProcess.RegisteredEndpoint(node));
    }
}
