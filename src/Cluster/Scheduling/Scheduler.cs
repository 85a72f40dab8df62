using Akka.Actor;
using Akka.Event;
using Flotilla.Cluster.Containers;
using Flotilla.Cluster.Nodes;
using Flotilla.Cluster.Queries;
using Flotilla.Contracts;
using Flotilla.Contracts.Containers;
using Flotilla.Contracts.Nodes;
using ClusterEvent = Akka.Cluster.ClusterEvent;

namespace Flotilla.Cluster.Scheduling;

/// <summary>
/// Cluster singleton: places new containers and moves containers off hosts that are gone or drained.
/// Placement runs on an in-memory picture of the nodes and their load, rebuilt from the projections every few
/// seconds (the containers updated from the rows written since the last read, see
/// <see cref="ClusterQueries.ContainersPlacedAsync(PlacedContainers?, CancellationToken)"/>) and kept current between
/// rebuilds by the scheduler's own decisions, so concurrent creates spread without a database round trip each. Failover is a reconciliation loop over the same picture: every container
/// that should run on a node that is gone (no cluster member any more, or its host lease expired) is rescheduled, once
/// — but only once that host's lease has expired (database time) plus a margin: by then the host's watchdog has killed
/// whatever ran there, whether the host died, its engine crashed or it was cut off. Membership only makes it prompt.
/// </summary>
public sealed class Scheduler : ReceiveActor, IWithTimers
{
    public const string SingletonName = "scheduler";
    private static readonly TimeSpan RefreshEvery = TimeSpan.FromSeconds(2);
    /// <summary>
    /// A move off a drained node not answered by then is tried again by the next pass (the entity ignores a move it
    /// already made); it includes stopping the container there (its stop timeout).
    /// </summary>
    private static readonly TimeSpan MoveTimeout = TimeSpan.FromSeconds(20);
    /// <summary>
    /// A move off a node that is gone, not answered by then, is sent again at once. The first can be lost: right after
    /// the removal the local shard region may still route the entity to the dead member's region (seen as a 20 s stall
    /// in 1 of 10 failover rounds). A slow but live first attempt makes the repeat a no-op.
    /// </summary>
    private static readonly TimeSpan LostHostMoveTimeout = TimeSpan.FromSeconds(3);
    /// <summary>
    /// A decision not yet visible in the projection is counted until a read shows it, or a read that began after its
    /// create was stored does not (it was removed in between: counting it would skew spread), or for this long.
    /// </summary>
    private static readonly TimeSpan PendingFor = TimeSpan.FromSeconds(30);

    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly ClusterQueries _queries;
    private readonly HostLeaseStore _leaseStore;
    private readonly LeaseTiming _timing;
    private readonly EventStore.IEventJournal _journal;
    /// <summary>The hosts' leases as of the last read (database time inside each).</summary>
    private IReadOnlyDictionary<string, HostLease> _leases = new Dictionary<string, HostLease>();
    /// <summary>Some container waits for its gone host's lease to expire: the leases are read more often meanwhile.</summary>
    private bool _awaitingLease;
    private bool _readingLeases;
    /// <summary>Expiries already recorded (node, epoch), and waits already logged.</summary>
    private readonly HashSet<(string Node, long Epoch)> _expiryRecorded = [];
    private readonly HashSet<(string Node, long Epoch)> _waitLogged = [];
    /// <summary>Containers kept on a drained node for their volumes, already logged.</summary>
    private readonly HashSet<string> _pinnedLogged = [];
    private readonly IActorRef _containers;
    private readonly string _defaultStrategy;
    private readonly bool _failover;
    private readonly Akka.Cluster.Cluster _cluster = Akka.Cluster.Cluster.Get(Context.System);

    private IReadOnlyList<NodeView> _nodes = [];
    private IReadOnlyList<PlacedContainer> _placed = [];
    /// <summary>The last read of the placed containers: the next one only fetches what changed since.</summary>
    private PlacedContainers? _placedRead;
    private DateTimeOffset _lastFullRead = DateTimeOffset.MinValue;
    /// <summary>Placements decided but not yet seen in a read; <c>StoredAt</c> once their create is stored (<see cref="PlacementRecorded"/>).</summary>
    private readonly Dictionary<string, (string Node, long Memory, long NanoCpus, DateTimeOffset At, DateTimeOffset? StoredAt)> _pending = [];
    /// <summary>Containers being moved right now (container id → target), so the loop never moves one twice.</summary>
    private readonly Dictionary<string, string> _moving = [];
    private bool _refreshing;
    private bool _refreshAgain;
    /// <summary>Placements that found no node, held for one refresh (a node that just registered may not be in the picture yet).</summary>
    private readonly List<(PlaceContainer Request, IActorRef ReplyTo)> _awaitingRefresh = [];

    public ITimerScheduler Timers { get; set; } = null!;

    /// <param name="failover">
    /// Move containers off hosts that leave. Off for the all-in-one process: its containers outlive it and are
    /// re-adopted when it comes back, and there is nowhere else to go.
    /// </param>
    public Scheduler(ClusterQueries queries, HostLeaseStore leases, EventStore.IEventJournal journal, LeaseTiming timing, IActorRef containers,
        string defaultStrategy, bool failover)
    {
        _queries = queries;
        _leaseStore = leases;
        _journal = journal;
        _timing = timing;
        _containers = containers;
        _defaultStrategy = defaultStrategy;
        _failover = failover;

        Receive<PlaceContainer>(OnPlace);
        Receive<ReleasePlacement>(m => _pending.Remove(m.ContainerId));
        Receive<PlacementRecorded>(m =>
        {
            if (_pending.TryGetValue(m.ContainerId, out var p)) _pending[m.ContainerId] = p with { StoredAt = DateTimeOffset.UtcNow };
        });
        Receive<Refresh>(_ => StartRefresh());
        Receive<ReadLeases>(_ =>
        {
            if (!_awaitingLease || _readingLeases || _refreshing) return;
            _readingLeases = true;
            var store = _leaseStore;
            Task.Run(async () => (object)new LeasesRead(await store.AllAsync())).PipeTo(Self);
        });
        Receive<LeasesRead>(m =>
        {
            _readingLeases = false;
            _leases = m.Leases;
            MoveOrphans();
        });
        Receive<Refreshed>(OnRefreshed);
        Receive<Status.Failure>(f =>
        {
            _refreshing = false;
            _readingLeases = false;
            foreach (var (_, replyTo) in _awaitingRefresh) replyTo.Tell(new PlacementRefused("the cluster state could not be read: " + f.Cause.Message));
            _awaitingRefresh.Clear();
            _log.Warning("scheduler: could not read the cluster state: {0}", f.Cause.Message);
        });
        Receive<MoveFinished>(m =>
        {
            _moving.Remove(m.ContainerId);
            if (m.Error is null) return;
            _log.Warning("scheduler: moving {0} to {1} failed: {2}", Short(m.ContainerId), m.To, m.Error);
            // An unanswered move may have been lost on the way: again at once. A refused one waits for the next pass.
            if (m.Unanswered) StartRefresh();
        });
        // Moving starts at removal, not at downing: until the member is removed its shards still live there, and a
        // message to one of its entities would be lost.
        Receive<ClusterEvent.MemberRemoved>(_ =>
        {
            RebuildPicture();
            // Move what the last read placed there now, without waiting for a fresh read: an entity ignores a move
            // that no longer applies (removed, stopped, already elsewhere). The read then catches anything newer.
            MoveOrphans();
            StartRefresh();
        });
        Receive<ClusterEvent.IMemberEvent>(_ => { });
        Receive<ClusterEvent.CurrentClusterState>(_ => { });
    }

    public static Props PropsFor(ClusterQueries queries, HostLeaseStore leases, EventStore.IEventJournal journal, LeaseTiming timing,
        IActorRef containers, string defaultStrategy, bool failover) =>
        Props.Create(() => new Scheduler(queries, leases, journal, timing, containers, defaultStrategy, failover));

    private sealed record Refresh
    {
        public static readonly Refresh Instance = new();
    }

    private sealed record ReadLeases
    {
        public static readonly ReadLeases Instance = new();
    }

    /// <summary>While a move waits for a lease to expire, the leases are read this often (one small query).</summary>
    private static readonly TimeSpan LeasePollEvery = TimeSpan.FromMilliseconds(200);

    private sealed record LeasesRead(IReadOnlyDictionary<string, HostLease> Leases);

    private sealed record Refreshed(IReadOnlyList<NodeView> Nodes, PlacedContainers Placed, DateTimeOffset ReadAt, IReadOnlyDictionary<string, HostLease> Leases);

    /// <summary>A whole read now and then, though updates miss nothing: cheap insurance at this interval.</summary>
    private static readonly TimeSpan FullReadEvery = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A placement waits for a fresh read when the picture is older than this: containers removed or nodes drained
    /// and activated since the last read change where the next one should go. A burst shares one read.
    /// </summary>
    private static readonly TimeSpan FreshFor = TimeSpan.FromMilliseconds(250);

    private DateTimeOffset _pictureReadAt = DateTimeOffset.MinValue;

    private sealed record MoveFinished(string ContainerId, string To, string? Error, bool Unanswered = false);

    protected override void PreStart()
    {
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents, typeof(ClusterEvent.MemberRemoved));
        Timers.StartPeriodicTimer("refresh", Refresh.Instance, TimeSpan.Zero, RefreshEvery);
        Timers.StartPeriodicTimer("leases", ReadLeases.Instance, LeasePollEvery, LeasePollEvery);
    }

    protected override void PostStop() => _cluster.Unsubscribe(Self);

    private static string Short(string id) => id[..Math.Min(12, id.Length)];

    private void StartRefresh()
    {
        if (_refreshing)
        {
            // The read in flight may predate what triggered this one: read again right after it.
            _refreshAgain = true;
            return;
        }
        _refreshing = true;
        var queries = _queries;
        var readAt = DateTimeOffset.UtcNow;
        var previous = readAt - _lastFullRead > FullReadEvery ? null : _placedRead;
        var leases = _leaseStore;
        Task.Run(async () => (object)new Refreshed(await queries.NodesAsync(), await queries.ContainersPlacedAsync(previous), readAt,
            await leases.AllAsync())).PipeTo(Self);
    }

    private void OnRefreshed(Refreshed m)
    {
        _refreshing = false;
        if (_refreshAgain)
        {
            _refreshAgain = false;
            StartRefresh();
        }
        _nodes = m.Nodes;
        _leases = m.Leases;
        _placedRead = m.Placed;
        if (!m.Placed.Incremental) _lastFullRead = m.ReadAt;
        _placed = [.. m.Placed.ById.Values];
        var now = DateTimeOffset.UtcNow;
        foreach (var id in _pending.Keys.ToList())
        {
            // The read's snapshot was taken after ReadAt: if the create was stored before that, the read shows the
            // container unless it is already gone.
            var pending = _pending[id];
            var goneSinceStored = pending.StoredAt < m.ReadAt; // false while not stored
            if (m.Placed.ById.ContainsKey(id) || goneSinceStored || now - pending.At > PendingFor) _pending.Remove(id);
        }
        RebuildPicture();
        _pictureReadAt = m.ReadAt;
        var retry = _awaitingRefresh.ToList();
        _awaitingRefresh.Clear();
        foreach (var (request, replyTo) in retry) Place(request, replyTo, retried: true);
        MoveOrphans();
    }

    /// <summary>Members the cluster still counts (an unreachable member is one until the resolver downs it).</summary>
    private HashSet<string> MemberAddresses() =>
        _cluster.State.Members.Where(m => m.Status is not (Akka.Cluster.MemberStatus.Down or Akka.Cluster.MemberStatus.Removed))
            .Select(m => m.Address.ToString()).ToHashSet();

    /// <summary>
    /// The picture placements run on: nodes that take containers (registered ready, active, members, node role) with
    /// their load. Rebuilt from each read of the projections; between reads every decision adds to it in place.
    /// </summary>
    private Dictionary<string, NodeCapacity> _picture = [];

    private void RebuildPicture()
    {
        var members = MemberAddresses();
        var picture = _nodes
            .Where(n => n.IsNode && n.Status == NodeStatus.Ready && n.Availability == NodeAvailability.Active && members.Contains(n.Address))
            .ToDictionary(n => n.Name, n => new NodeCapacity(n.Name, n.Cpus, n.MemoryBytes, n.Labels));
        var placedById = new Dictionary<string, PlacedContainer>(_placed.Count);
        foreach (var c in _placed)
        {
            placedById[c.ContainerId] = c;
            if (_pending.ContainsKey(c.ContainerId) || _moving.ContainsKey(c.ContainerId)) continue;
            if (picture.TryGetValue(c.Node, out var node)) Add(node, c.Memory, c.NanoCpus);
        }
        foreach (var (_, p) in _pending)
            if (picture.TryGetValue(p.Node, out var node)) Add(node, p.Memory, p.NanoCpus);
        foreach (var (id, to) in _moving)
            if (picture.TryGetValue(to, out var node) && placedById.TryGetValue(id, out var c))
                Add(node, c.Memory, c.NanoCpus);
        _picture = picture;
    }

    private IReadOnlyCollection<NodeCapacity> Candidates(string? excluding = null) =>
        excluding is null ? _picture.Values : _picture.Values.Where(n => n.Name != excluding).ToList();

    private static void Add(NodeCapacity node, long memory, long nanoCpus)
    {
        node.Containers++;
        node.ReservedMemory += memory;
        node.ReservedNanoCpus += nanoCpus;
    }

    private void OnPlace(PlaceContainer m) => Place(m, Sender, retried: false);

    private void Place(PlaceContainer m, IActorRef replyTo, bool retried)
    {
        var strategy = m.Strategy ?? _defaultStrategy;
        if (!PlacementStrategies.IsKnown(strategy))
        {
            replyTo.Tell(new PlacementRefused($"unknown placement strategy '{strategy}': spread or binpack"));
            return;
        }
        List<PlacementConstraint> constraints;
        try
        {
            constraints = m.Constraints.Select(PlacementConstraint.Parse).ToList();
        }
        catch (FormatException ex)
        {
            replyTo.Tell(new PlacementRefused(ex.Message));
            return;
        }
        var candidates = Candidates();
        if (!retried && (candidates.Count == 0 || DateTimeOffset.UtcNow - _pictureReadAt > FreshFor))
        {
            _awaitingRefresh.Add((m, replyTo));
            StartRefresh();
            return;
        }
        var outcome = PlacementPolicy.Choose(candidates, m.MemoryBytes, m.NanoCpus, constraints, strategy);
        if (outcome.Node is null)
        {
            replyTo.Tell(new PlacementRefused($"unable to find a node for the container: {outcome.Reason}"));
            return;
        }
        _pending[m.ContainerId] = (outcome.Node.Name, m.MemoryBytes, m.NanoCpus, DateTimeOffset.UtcNow, null);
        Add(outcome.Node, m.MemoryBytes, m.NanoCpus);
        replyTo.Tell(new PlacementDecision(outcome.Node.Name, strategy, outcome.Reason));
    }

    /// <summary>
    /// Containers that should run on a host that is gone (or drained) go elsewhere; if they may not, their run is over.
    /// Off a gone host only once its lease has expired (plus a margin): until then its watchdog may not have fenced
    /// them, and they may still run there.
    /// </summary>
    private void MoveOrphans()
    {
        if (!_failover) return;
        if (!_cluster.State.Members.Any(m => m.Address == _cluster.SelfAddress && m.Status == Akka.Cluster.MemberStatus.Up)) return;
        // Every member, downed ones included: a downed member's shards move only once it is removed.
        var members = _cluster.State.Members.Select(m => m.Address.ToString()).ToHashSet();
        var unreachable = _cluster.State.Unreachable.Select(m => m.Address.ToString()).ToHashSet();
        var byName = _nodes.ToDictionary(n => n.Name);
        var awaiting = false;
        foreach (var c in _placed)
        {
            if (c.Desired != DesiredState.Running || _moving.ContainsKey(c.ContainerId)) continue;
            if (c.Status is not (ContainerStatus.Running or ContainerStatus.Paused or ContainerStatus.Restarting)) continue;
            if (!byName.TryGetValue(c.Node, out var node)) continue;
            var lease = _leases.GetValueOrDefault(c.Node);
            var leaseExpired = lease is null || lease.ExpiredBy(_timing.MoveMargin);
            var gone = node.Status != NodeStatus.Ready || !members.Contains(node.Address) || (lease is not null && leaseExpired);
            var drained = !gone && node.Availability == NodeAvailability.Drain;
            if (!gone && !drained) continue;
            if (gone && !leaseExpired)
            {
                // Safety: never before the old host's lease has expired.
                awaiting = true;
                if (_waitLogged.Add((c.Node, lease!.Epoch)))
                    _log.Info("scheduler: node {0} is gone; its containers move once its lease (epoch {1}) has expired, in {2:F1} s",
                        c.Node, lease.Epoch, lease.ExpiresIn(_timing.MoveMargin).TotalSeconds);
                continue;
            }
            if (gone && members.Contains(node.Address) && unreachable.Contains(node.Address))
            {
                // Fenced, but its member (and the shards on it) not yet removed: a move sent now could be lost there.
                awaiting = true;
                continue;
            }
            if (gone && lease is not null) RecordExpiry(c.Node, lease);

            var reason = gone
                ? $"node {c.Node} left the cluster ({node.LeftReason ?? (lease is not null && leaseExpired ? $"its lease epoch {lease.Epoch} expired" : "no longer a member")})"
                : $"node {c.Node} is drained";
            if (c.Volumes.Count > 0 && !c.MovesWithoutVolumes)
            {
                // Its data is on that node: started elsewhere it would find empty volumes (Swarm does that silently).
                var pinned = Volumes.VolumeRegistry.PinnedReason(c.Volumes, c.Node);
                if (gone)
                {
                    _log.Warning("scheduler: {0} stays off: {1}; {2}", Short(c.ContainerId), reason, pinned);
                    Lose(c, $"{reason}; {pinned}");
                }
                else if (_pinnedLogged.Add(c.ContainerId))
                {
                    _log.Warning("scheduler: {0} stays on drained node {1}: {2}", Short(c.ContainerId), c.Node, pinned);
                }
                continue;
            }
            if (c.RestartPolicy == RestartPolicyName.No && gone)
            {
                Lose(c, reason + "; restart policy 'no' keeps it off other nodes");
                continue;
            }
            var outcome = PlacementPolicy.Choose(Candidates(excluding: c.Node), c.Memory, c.NanoCpus, [], _defaultStrategy);
            if (outcome.Node is null)
            {
                _log.Warning("scheduler: {0} cannot leave {1}: {2}", Short(c.ContainerId), c.Node, outcome.Reason);
                if (gone) Lose(c, $"{reason}; {outcome.Reason}");
                continue;
            }
            Add(outcome.Node, c.Memory, c.NanoCpus);
            Move(c, outcome.Node.Name, fromAlive: !gone, $"{reason}; {outcome.Reason}", gone ? lease?.Epoch ?? 0 : null);
        }
        _awaitingLease = awaiting;
    }

    /// <summary><see cref="HostLeaseExpired"/> on the node's stream, once per epoch (another scheduler's conflict is fine).</summary>
    private void RecordExpiry(string node, HostLease lease)
    {
        if (!_expiryRecorded.Add((node, lease.Epoch))) return;
        _log.Info("scheduler: the lease of node {0} (epoch {1}) expired at {2:O}", node, lease.Epoch, lease.ExpiresAt);
        var journal = _journal;
        var log = _log;
        var self = _cluster.SelfAddress.ToString();
        _ = Task.Run(async () =>
        {
            var key = NodeStreams.Key(node);
            try
            {
                var stream = await journal.ReadAsync(key);
                if (stream.Events.OfType<HostLeaseExpired>().Any(e => e.Epoch == lease.Epoch)) return;
                await journal.AppendAsync(key, stream.Version, [new HostLeaseExpired(node, lease.Epoch, lease.ExpiresAt, DateTimeOffset.UtcNow)],
                    EventStore.EventMetadata.From(RequestOrigin.System(), self));
            }
            catch (Exception ex) when (ex is EventStore.StreamVersionConflictException)
            {
            }
            catch (Exception ex)
            {
                log.Warning("scheduler: could not record the expiry of {0}'s lease: {1}", node, ex.Message);
            }
        });
    }

    private void Move(PlacedContainer c, string to, bool fromAlive, string reason, long? expiredEpoch)
    {
        _moving[c.ContainerId] = to;
        _log.Info("scheduler: moving {0} from {1} to {2}: {3}", Short(c.ContainerId), c.Node, to, reason);
        var id = c.ContainerId;
        _containers.Ask<object>(new RescheduleContainer(id, c.Node, to, fromAlive, reason, RequestOrigin.System(), expiredEpoch),
                fromAlive ? MoveTimeout : LostHostMoveTimeout)
            .ContinueWith(t => new MoveFinished(id, to, t.IsCompletedSuccessfully
                ? t.Result is CommandRejected r ? r.Message : null
                : t.Exception?.GetBaseException().Message ?? "cancelled", t.Exception?.GetBaseException() is AskTimeoutException), TaskScheduler.Default)
            .PipeTo(Self);
    }

    private void Lose(PlacedContainer c, string reason)
    {
        _moving[c.ContainerId] = c.Node;
        var id = c.ContainerId;
        _containers.Ask<object>(new MarkContainerNodeLost(id, c.Node, reason, RequestOrigin.System()), LostHostMoveTimeout)
            .ContinueWith(t => new MoveFinished(id, c.Node, t.IsCompletedSuccessfully
                ? t.Result is CommandRejected r ? r.Message : null
                : t.Exception?.GetBaseException().Message ?? "cancelled", t.Exception?.GetBaseException() is AskTimeoutException), TaskScheduler.Default)
            .PipeTo(Self);
    }
}
