using Flotilla.Contracts.Nodes;
using Marten.Events.Aggregation;

namespace Flotilla.Cluster.Nodes;

/// <summary>Read model of one node, folded from its stream by <see cref="NodeViewProjection"/>.</summary>
public sealed class NodeView
{
    public string Id { get; set; } = "";
    public string Name { get; set; } = "";
    public string Hostname { get; set; } = "";
    public string Address { get; set; } = "";
    /// <summary>The node's HTTP listener (<c>host:port</c>): Docker API for its containers and peer blobs.</summary>
    public string ApiEndpoint { get; set; } = "";
    /// <summary>Where its local volumes live (<c>&lt;data&gt;/volumes</c>); empty on a gateway.</summary>
    public string VolumeRoot { get; set; } = "";
    public List<string> Roles { get; set; } = [];
    public int Cpus { get; set; }
    public long MemoryBytes { get; set; }
    public string Kernel { get; set; } = "";
    public string OciRuntime { get; set; } = "";
    public Dictionary<string, string> Labels { get; set; } = [];
    public string Status { get; set; } = NodeStatus.Ready;
    public string? LeftReason { get; set; }
    public DateTimeOffset JoinedAt { get; set; }
    public DateTimeOffset? LeftAt { get; set; }
    public int Joins { get; set; }
    /// <summary><c>active</c>, or <c>drain</c>: takes no containers and its containers are moved off.</summary>
    public string Availability { get; set; } = NodeAvailability.Active;
    public bool IsNode => Roles.Contains("node");
}

public static class NodeAvailability
{
    public const string Active = "active";
    public const string Drain = "drain";
}

public static class NodeStatus
{
    public const string Ready = "ready";
    public const string Down = "down";
}

public sealed class NodeViewProjection : SingleStreamProjection<NodeView, string>
{
    public static NodeView Create(NodeJoined e) => Fold(new NodeView(), e);

    public static NodeView Apply(NodeJoined e, NodeView view) => Fold(view, e);

    public static NodeView Apply(NodeLeft e, NodeView view)
    {
        view.Status = NodeStatus.Down;
        view.LeftReason = e.Reason;
        view.LeftAt = e.At;
        return view;
    }

    public static NodeView Apply(NodeDrained e, NodeView view)
    {
        view.Availability = NodeAvailability.Drain;
        return view;
    }

    public static NodeView Apply(NodeActivated e, NodeView view)
    {
        view.Availability = NodeAvailability.Active;
        return view;
    }

    private static NodeView Fold(NodeView view, NodeJoined e)
    {
        view.Id = NodeStreams.Key(e.Name);
        view.Name = e.Name;
        view.Hostname = e.Hostname;
        view.Address = e.Address;
        view.ApiEndpoint = e.ApiEndpoint;
        view.VolumeRoot = e.VolumeRoot;
        view.Roles = [.. e.Roles];
        view.Cpus = e.Cpus;
        view.MemoryBytes = e.MemoryBytes;
        view.Kernel = e.Kernel;
        view.OciRuntime = e.OciRuntime;
        view.Labels = e.Labels.ToDictionary();
        view.Status = NodeStatus.Ready;
        view.LeftReason = null;
        view.LeftAt = null;
        view.JoinedAt = e.At;
        view.Joins++;
        return view;
    }
}
