using Akka;
using Akka.Actor;
using Akka.Event;
using Flotilla.Cluster.EventStore;
using Flotilla.Cluster.Queries;
using Flotilla.Contracts;
using Flotilla.Contracts.Nodes;
using ClusterEvent = Akka.Cluster.ClusterEvent;

namespace Flotilla.Cluster.Nodes;

/// <summary>How a node describes itself in its <see cref="NodeJoined"/> event.</summary>
public sealed record NodeDescription(
    string Name,
    string Hostname,
    IReadOnlyList<string> Roles,
    int Cpus,
    long MemoryBytes,
    string Kernel,
    string OciRuntime,
    IReadOnlyDictionary<string, string> Labels,
    string ApiEndpoint = "",
    string VolumeRoot = "");

/// <summary>
/// One per node: records <see cref="NodeJoined"/> when the node starts and <see cref="NodeLeft"/>
/// when it stops; also records the departure of peers that the cluster removed without a
/// goodbye (crash, downing). Several survivors may try that at once: the stream version lets
/// exactly one of them write it.
/// </summary>
public sealed class NodeAgent : ReceiveActor, IWithTimers
{
    public sealed record RecordLeave(string Reason);

    public sealed record Registered(long Version);

    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly EntityHost _host;
    private readonly NodeDescription _self;
    private readonly ClusterQueries _queries;
    private readonly Akka.Cluster.Cluster _cluster = Akka.Cluster.Cluster.Get(Context.System);
    private bool _left;

    public ITimerScheduler Timers { get; set; } = null!;

    public NodeAgent(EntityHost host, NodeDescription self, ClusterQueries queries)
    {
        _host = host;
        _self = self;
        _queries = queries;

        ReceiveAsync<RecordLeave>(async m =>
        {
            var replyTo = Sender;
            if (!_left)
            {
                _left = true;
                await AppendWithRetryAsync(_self.Name, _ => new NodeLeft(_self.Name, m.Reason, DateTimeOffset.UtcNow));
            }
            replyTo.Tell(Done.Instance);
        });
        Receive<ClusterEvent.MemberRemoved>(removed =>
            Self.Tell(new CheckRemovedPeer(removed.Member.Address.ToString(), removed.PreviousStatus.ToString(), 0)));
        ReceiveAsync<CheckRemovedPeer>(OnPeerRemoved);
        ReceiveAsync<SweepDepartedPeers>(_ => SweepAsync());
        Receive<ClusterEvent.IMemberEvent>(_ => { });
        Receive<ClusterEvent.CurrentClusterState>(_ => { });
    }

    public static Props PropsFor(EntityHost host, NodeDescription self, ClusterQueries queries) =>
        Props.Create(() => new NodeAgent(host, self, queries));

    protected override void PreStart()
    {
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents, typeof(ClusterEvent.MemberRemoved));
        Timers.StartPeriodicTimer("sweep-departed", SweepDepartedPeers.Instance, SweepEvery, SweepEvery);
        RunTask(async () =>
        {
            var address = _cluster.SelfAddress.ToString();
            await AppendWithRetryAsync(_self.Name, _ => new NodeJoined(_self.Name, _self.Hostname, address, _self.Roles,
                _self.Cpus, _self.MemoryBytes, _self.Kernel, _self.OciRuntime, _self.Labels, DateTimeOffset.UtcNow, _self.ApiEndpoint, _self.VolumeRoot));
            _log.Info("Node {0} registered at {1} ({2} CPUs, {3} MiB, kernel {4}, runtime {5})", _self.Name, address,
                _self.Cpus, _self.MemoryBytes / (1024 * 1024), _self.Kernel, _self.OciRuntime);
        });
    }

    protected override void PostStop() => _cluster.Unsubscribe(Self);

    /// <summary>A removed member to record as left; retried while its own registration may still be on its way.</summary>
    private sealed record CheckRemovedPeer(string Address, string PreviousStatus, int Attempt);

    private const int PeerChecks = 10;

    /// <summary>The slow loop behind the event-driven path: a peer listed as ready that is no cluster member any more.</summary>
    private sealed record SweepDepartedPeers
    {
        public static readonly SweepDepartedPeers Instance = new();
    }

    private static readonly TimeSpan SweepEvery = TimeSpan.FromSeconds(2);
    /// <summary>Gossip can lag a join by a moment: a registration younger than this is never swept.</summary>
    private static readonly TimeSpan SweepGrace = TimeSpan.FromSeconds(10);

    private async Task SweepAsync()
    {
        if (_left || !SelfIsUp()) return;
        var members = _cluster.State.Members.Select(m => m.Address.ToString()).ToHashSet();
        foreach (var peer in await _queries.NodesAsync())
        {
            if (peer.Name == _self.Name || peer.Status != NodeStatus.Ready || members.Contains(peer.Address)) continue;
            if (DateTimeOffset.UtcNow - peer.JoinedAt < SweepGrace) continue;
            Self.Tell(new CheckRemovedPeer(peer.Address, "gone", PeerChecks));
        }
    }

    private async Task OnPeerRemoved(CheckRemovedPeer removed)
    {
        // A member that is leaving itself sees every peer "removed" as its own cluster view shuts down:
        // those removals say nothing about the peers, so only a member that is Up speaks for them.
        if (_left || removed.Address == _cluster.SelfAddress.ToString() || !SelfIsUp()) return;
        var peer = await _queries.NodeByAddressAsync(removed.Address);
        if (peer is null)
        {
            // A peer that left right after joining may have its NodeJoined committed after this check (a slow
            // database): look again, or nobody would ever record that it left.
            if (removed.Attempt < PeerChecks)
                Timers.StartSingleTimer("peer-" + removed.Address, removed with { Attempt = removed.Attempt + 1 }, TimeSpan.FromSeconds(1));
            return;
        }
        if (peer.Status != NodeStatus.Ready) return;
        // The same node back already (an engine restart: a new incarnation at the same address) has not left.
        if (_cluster.State.Members.Any(m => m.Address.ToString() == removed.Address && m.Status is Akka.Cluster.MemberStatus.Joining
                or Akka.Cluster.MemberStatus.WeaklyUp or Akka.Cluster.MemberStatus.Up)) return;
        var stream = await _host.Journal.ReadAsync(NodeStreams.Key(peer.Name));
        // Lease and fence events come and go between a join and a leave: the last of those two is what counts.
        if (stream.Events.LastOrDefault(e => e is NodeJoined or NodeLeft) is not NodeJoined || _left || !SelfIsUp()) return;
        try
        {
            await _host.Journal.AppendAsync(NodeStreams.Key(peer.Name), stream.Version,
                [new NodeLeft(peer.Name, $"removed from the cluster (was {removed.PreviousStatus})", DateTimeOffset.UtcNow)],
                EventMetadata.From(RequestOrigin.System(), _host.NodeName));
            _log.Info("Recorded the departure of node {0}", peer.Name);
        }
        catch (StreamVersionConflictException)
        {
            // Another survivor recorded it first, or the node came back: both are fine.
        }
    }

    private bool SelfIsUp() => !_cluster.IsTerminated && _cluster.SelfMember.Status == Akka.Cluster.MemberStatus.Up;

    /// <summary>Appends to this node's own stream; a conflict here only means our read was stale, so re-read once.</summary>
    private async Task AppendWithRetryAsync(string nodeName, Func<long, INodeEvent> make)
    {
        var key = NodeStreams.Key(nodeName);
        for (var attempt = 0; ; attempt++)
        {
            var stream = await _host.Journal.ReadAsync(key);
            try
            {
                await _host.Journal.AppendAsync(key, stream.Version, [make(stream.Version)],
                    EventMetadata.From(RequestOrigin.System(), _host.NodeName));
                return;
            }
            catch (StreamVersionConflictException) when (attempt < 3)
            {
            }
        }
    }
}
