using Flotilla.Cluster.Nodes;
using Flotilla.NodeRuntime.Host;

namespace Flotilla.Gateway;

/// <summary>Facts about this process that the API surfaces report.</summary>
public sealed record GatewayInfo(string ServerVersion, string NodeName, string DataRoot, NodeDescription Node, HostFacts Host)
{
    public static string AssemblyVersion =>
        typeof(GatewayInfo).Assembly.GetName().Version is { } v ? $"{v.Major}.{v.Minor}.{v.Build}" : "0.1.0";
}
