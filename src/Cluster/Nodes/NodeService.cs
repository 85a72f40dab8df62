using Flotilla.Cluster.EventStore;
using Flotilla.Cluster.Queries;
using Flotilla.Contracts;
using Flotilla.Contracts.Nodes;

namespace Flotilla.Cluster.Nodes;

/// <summary><c>flotilla node drain|activate</c>: availability changes, recorded on the node's stream; the scheduler acts on them.</summary>
public sealed class NodeService(ClusterQueries queries, IEventJournal journal, EntityHost host)
{
    public Task<NodeView> DrainAsync(string name, RequestOrigin origin, CancellationToken cancellationToken = default) =>
        SetAsync(name, NodeAvailability.Drain, origin, cancellationToken);

    public Task<NodeView> ActivateAsync(string name, RequestOrigin origin, CancellationToken cancellationToken = default) =>
        SetAsync(name, NodeAvailability.Active, origin, cancellationToken);

    private async Task<NodeView> SetAsync(string name, string availability, RequestOrigin origin, CancellationToken cancellationToken)
    {
        var node = (await queries.NodesAsync(cancellationToken)).FirstOrDefault(n => n.Name == name)
            ?? throw new OperationRejectedException(RejectionCode.NotFound, $"node {name} not found");
        if (!node.IsNode) throw new OperationRejectedException(RejectionCode.InvalidArgument, $"{name} is a gateway, not a node");
        if (node.Availability == availability) return node;
        var stream = await journal.ReadAsync(NodeStreams.Key(name), cancellationToken);
        INodeEvent change = availability == NodeAvailability.Drain
            ? new NodeDrained(name, origin.User, DateTimeOffset.UtcNow)
            : new NodeActivated(name, origin.User, DateTimeOffset.UtcNow);
        try
        {
            await journal.AppendAsync(NodeStreams.Key(name), stream.Version, [change], EventMetadata.From(origin, host.NodeName), cancellationToken);
        }
        catch (StreamVersionConflictException)
        {
            throw new OperationRejectedException(RejectionCode.Conflict, $"node {name} changed meanwhile; try again");
        }
        node.Availability = availability;
        return node;
    }
}
