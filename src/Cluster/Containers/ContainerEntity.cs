using Akka.Actor;
using Akka.Event;
using Flotilla.Cluster.EventStore;
using Flotilla.Contracts;
using Flotilla.Contracts.Containers;

namespace Flotilla.Cluster.Containers;

/// <summary>
/// One container: validates commands against its state, drives the runtime of the node it is placed
/// on, and persists what happened. Exits reported by the runtime, restart policies and auto-removal
/// all go through here, one message at a time.
/// </summary>
public sealed class ContainerEntity : EventSourcedEntity<ContainerState, IContainerEvent>, IWithTimers
{
    public const string RegionName = "container";
    private TimeSpan RuntimeTimeout => Host.Timeouts.RuntimeWork;
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);

    private readonly List<(IActorRef ReplyTo, WaitCondition Condition)> _waiters = [];

    /// <summary>
    /// The node's latest probes (inspect's log) and failing streak: kept in memory, as dockerd keeps them, so a probe
    /// costs no append; only a change of status is recorded. Lost with the entity, which then shows the recorded ones.
    /// </summary>
    private IReadOnlyList<HealthcheckResult>? _healthLog;
    private (long Generation, int Streak)? _failingStreak;

    public ContainerEntity(EntityHost host, string containerId)
        : base(host, ContainerStreams.Key(containerId), ContainerState.Empty(containerId))
    {
        ReceiveAsync<CreateContainer>(OnCreate);
        ReceiveAsync<StartContainer>(m => OnStart(m.Origin, "start"));
        ReceiveAsync<StopContainer>(OnStop);
        ReceiveAsync<KillContainer>(OnKill);
        ReceiveAsync<RestartContainer>(OnRestart);
        ReceiveAsync<PauseContainer>(m => OnPause(m.Origin, pause: true));
        ReceiveAsync<UnpauseContainer>(m => OnPause(m.Origin, pause: false));
        ReceiveAsync<RenameContainer>(OnRename);
        ReceiveAsync<RemoveContainer>(OnRemove);
        ReceiveAsync<RecordContainerExec>(m => RecordWhileRunning(m.Origin,
            new ContainerExecStarted(m.ContainerId, m.ExecId, m.Command, m.User, m.Tty, DateTimeOffset.UtcNow)));
        ReceiveAsync<RecordContainerCommit>(m => Record(m.Origin, new ContainerCommitted(m.ContainerId, m.ImageId, m.Reference, DateTimeOffset.UtcNow)));
        ReceiveAsync<RecordContainerExport>(m => Record(m.Origin, new ContainerExported(m.ContainerId, DateTimeOffset.UtcNow)));
        Receive<WaitForContainer>(OnWait);
        ReceiveAsync<ContainerProcessExited>(OnProcessExited);
        ReceiveAsync<RestartByPolicy>(OnRestartByPolicy);
        ReceiveAsync<ReconcileContainer>(m => Reconcile(m.Reason));
        ReceiveAsync<RescheduleContainer>(OnReschedule);
        ReceiveAsync<MarkContainerNodeLost>(OnNodeLost);
        Receive<GetContainer>(_ => Sender.Tell(Snapshot()));
        ReceiveAsync<ContainerHealthProbed>(OnHealthProbed);
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props PropsFor(EntityHost host, string containerId) => Props.Create(() => new ContainerEntity(host, containerId));

    protected override ContainerState Apply(ContainerState state, IContainerEvent e) => ContainerFold.Apply(state, e);

    private sealed record RestartByPolicy(long AfterGeneration);

    private string ShortId => State.ContainerId[..Math.Min(12, State.ContainerId.Length)];

    private bool Reject(RejectionCode code, string message)
    {
        Sender.Tell(new CommandRejected(code, message));
        return false;
    }

    private bool RequireExists(string? idForMessage = null) =>
        State.Exists || Reject(RejectionCode.NotFound, $"No such container: {idForMessage ?? State.ContainerId}");

    private async Task OnCreate(CreateContainer cmd)
    {
        if (State.Exists || State.Desired == DesiredState.Removed)
        {
            Reject(RejectionCode.Conflict, $"container {cmd.ContainerId} already exists");
            return;
        }
        var created = new ContainerCreated(cmd.ContainerId, cmd.Name, cmd.Definition, cmd.Node, DateTimeOffset.UtcNow);
        if (cmd.Placement is { } placement)
            await PersistAndAcknowledge(cmd.Origin, Sender, created,
                new ContainerPlaced(cmd.ContainerId, placement.Node, placement.Strategy, placement.Reason, created.At));
        else
            await PersistAndAcknowledge(cmd.Origin, created);
    }

    /// <summary>
    /// Moves the container to another node (its host is gone, or drained) and starts a new run there from its image.
    /// Only a container still on <see cref="RescheduleContainer.From"/> moves, so a repeated or late order changes nothing.
    /// </summary>
    private async Task OnReschedule(RescheduleContainer cmd)
    {
        var replyTo = Sender;
        if (!State.Exists || State.Node != cmd.From || State.Desired != DesiredState.Running)
        {
            replyTo.Tell(new ContainerCommandAccepted(State.ContainerId, [], Version));
            return;
        }
        if (!cmd.FromAlive && cmd.ExpiredEpoch is { } expired && State.RunEpoch > expired)
        {
            // The host came back under a newer lease and ran this again: the order is about a run that is over.
            Log.Info("{0}: not moved off {1}: its run is under lease epoch {2}, the order is about the expired epoch {3}",
                StreamKey, cmd.From, State.RunEpoch, expired);
            replyTo.Tell(new ContainerCommandAccepted(State.ContainerId, [], Version));
            return;
        }
        Timers.Cancel("restart");
        var before = new List<IContainerEvent>();
        if (cmd.FromAlive && State.IsRunning)
        {
            // A drain: the old host still runs it; stop it there first, so it never runs twice.
            var exited = await StopProcessAsync(State.Definition!.StopSignal, State.Definition.StopTimeout ?? 10, replyTo);
            if (exited is null) return;
            before.Add(new ContainerExited(State.ContainerId, exited.Generation, exited.ExitCode, exited.OomKilled, exited.At));
        }
        if (cmd.FromAlive)
        {
            try
            {
                await RuntimeAsker.AskAsync(Context, await RuntimeAsync(), new RemoveContainerFiles(State.ContainerId), RuntimeTimeout);
            }
            catch (Exception ex) when (ex is AskTimeoutException or RuntimeUnavailableException)
            {
                Log.Warning("{0}: could not clean up on {1} while moving: {2}", StreamKey, State.Node, ex.Message);
            }
        }
        before.Add(new ContainerRescheduled(State.ContainerId, cmd.From, cmd.To, cmd.Reason, DateTimeOffset.UtcNow, cmd.FromAlive ? null : cmd.ExpiredEpoch));
        if (!await PersistAsync(before, cmd.Origin)) return;
        var (events, error) = await StartRunAsync(cmd.Origin, []);
        if (events is null) return;
        IReadOnlyList<IContainerEvent> all = [.. before, .. events];
        if (error is not null) replyTo.Tell(new CommandRejected(RejectionCode.Internal, error));
        else replyTo.Tell(new ContainerCommandAccepted(State.ContainerId, all, Version));
    }

    /// <summary>The host of the current run is gone and the container does not move: that run is over.</summary>
    private async Task OnNodeLost(MarkContainerNodeLost cmd)
    {
        var replyTo = Sender;
        if (!State.Exists || State.Node != cmd.Node || State.Status is not (ContainerStatus.Running or ContainerStatus.Paused or ContainerStatus.Restarting))
        {
            replyTo.Tell(new ContainerCommandAccepted(State.ContainerId, [], Version));
            return;
        }
        Timers.Cancel("restart");
        await PersistAndAcknowledge(cmd.Origin, replyTo,
            new ContainerNodeLost(State.ContainerId, cmd.Node, State.Generation, cmd.Reason, DateTimeOffset.UtcNow));
        NotifyWaiters(exited: true, removed: false);
    }

    private async Task OnStart(RequestOrigin origin, string reason)
    {
        if (!RequireExists()) return;
        if (State.Status == ContainerStatus.Paused)
        {
            Reject(RejectionCode.Conflict, "cannot start a paused container, try unpause instead");
            return;
        }
        if (State.IsRunning)
        {
            Reject(RejectionCode.NotModified, "container already started");
            return;
        }
        var replyTo = Sender;
        var (events, error) = await StartRunAsync(origin, []);
        if (events is null) return;
        if (error is not null) replyTo.Tell(new CommandRejected(RejectionCode.Internal, error));
        else replyTo.Tell(new ContainerCommandAccepted(State.ContainerId, events, Version));
    }

    /// <summary>
    /// Starts a new run generation on the container's node and persists the outcome (after any
    /// <paramref name="before"/> events). Returns the events, and the error when the start failed;
    /// null events when persisting itself failed (the entity is stopping).
    /// </summary>
    private async Task<(IReadOnlyList<IContainerEvent>? Events, string? Error)> StartRunAsync(RequestOrigin origin, IReadOnlyList<IContainerEvent> before)
    {
        var generation = State.Generation + 1;
        object reply;
        try
        {
            var runtime = await RuntimeAsync();
            reply = await RuntimeAsker.AskAsync(Context, runtime, new RunContainerProcess(State.ContainerId, State.Name, generation, State.Definition!), RuntimeTimeout);
        }
        catch (Exception ex) when (ex is AskTimeoutException or RuntimeUnavailableException)
        {
            reply = new ContainerProcessFailed(State.ContainerId, generation, ex.Message, 128);
        }
        IContainerEvent outcome = reply switch
        {
            ContainerProcessStarted s => new ContainerStarted(State.ContainerId, generation, State.Node, s.Pid, s.At, s.Epoch),
            ContainerProcessFailed f => new ContainerStartFailed(State.ContainerId, generation, f.Error, f.ExitCode, DateTimeOffset.UtcNow),
            var other => new ContainerStartFailed(State.ContainerId, generation, $"unexpected runtime reply {other.GetType().Name}", 128, DateTimeOffset.UtcNow),
        };
        IReadOnlyList<IContainerEvent> events = [.. before, outcome];
        if (!await PersistAsync(events, origin)) return (null, null);
        if (outcome is ContainerStartFailed failed)
        {
            NotifyWaiters(exited: true, removed: false);
            // As dockerd: a --rm container that failed to start is removed (docker run waits for that, then exits 125-127).
            if (State.Definition?.AutoRemove == true && State.Exists) await AutoRemoveAsync(origin);
            return (events, failed.Error);
        }
        return (events, null);
    }

    private async Task OnStop(StopContainer cmd)
    {
        if (!RequireExists()) return;
        if (!State.IsRunning)
        {
            Reject(RejectionCode.NotModified, "container already stopped");
            return;
        }
        var replyTo = Sender;
        var timeout = cmd.TimeoutSeconds ?? State.Definition!.StopTimeout ?? 10;
        var signal = cmd.Signal ?? State.Definition!.StopSignal;
        var exited = await StopProcessAsync(signal, timeout, replyTo);
        if (exited is null) return;
        IReadOnlyList<IContainerEvent> events =
        [
            new ContainerStopped(State.ContainerId, signal, timeout, DateTimeOffset.UtcNow),
            new ContainerExited(State.ContainerId, exited.Generation, exited.ExitCode, exited.OomKilled, exited.At),
        ];
        if (!await PersistAsync(events, cmd.Origin)) return;
        replyTo.Tell(new ContainerCommandAccepted(State.ContainerId, events, Version));
        await AfterExitAsync(cmd.Origin);
    }

    /// <summary>Asks the runtime to stop the current run; null (and the caller told) when it could not.</summary>
    private async Task<ContainerProcessExited?> StopProcessAsync(Signal signal, int timeoutSeconds, IActorRef replyTo)
    {
        try
        {
            var runtime = await RuntimeAsync();
            var reply = await RuntimeAsker.AskAsync(Context, runtime, new StopContainerProcess(State.ContainerId, State.Generation, signal, timeoutSeconds),
                Host.Timeouts.RuntimeStop(timeoutSeconds));
            if (reply is ContainerProcessExited exited) return exited;
            replyTo.Tell(new CommandRejected(RejectionCode.Internal, reply is RuntimeFailed f ? f.Error : "the runtime did not stop the container"));
        }
        catch (Exception ex) when (ex is AskTimeoutException or RuntimeUnavailableException)
        {
            replyTo.Tell(new CommandRejected(RejectionCode.Unavailable, ex.Message));
        }
        return null;
    }

    private async Task OnKill(KillContainer cmd)
    {
        if (!RequireExists()) return;
        if (!State.IsRunning)
        {
            Reject(RejectionCode.Conflict, $"cannot kill container: {State.ContainerId}: container {State.ContainerId} is not running");
            return;
        }
        var replyTo = Sender;
        if (!await RuntimeDoAsync(new SignalContainerProcess(State.ContainerId, State.Generation, cmd.Signal), replyTo)) return;
        await PersistAndAcknowledge(cmd.Origin, replyTo, new ContainerKilled(State.ContainerId, cmd.Signal, DateTimeOffset.UtcNow));
    }

    private async Task OnRestart(RestartContainer cmd)
    {
        if (!RequireExists()) return;
        var replyTo = Sender;
        var before = new List<IContainerEvent>();
        if (State.IsRunning)
        {
            if (State.Status == ContainerStatus.Paused &&
                !await RuntimeDoAsync(new PauseContainerProcess(State.ContainerId, State.Generation, false), replyTo)) return;
            var timeout = cmd.TimeoutSeconds ?? State.Definition!.StopTimeout ?? 10;
            var exited = await StopProcessAsync(State.Definition!.StopSignal, timeout, replyTo);
            if (exited is null) return;
            before.Add(new ContainerExited(State.ContainerId, exited.Generation, exited.ExitCode, exited.OomKilled, exited.At));
        }
        before.Add(new ContainerRestarted(State.ContainerId, "user", State.RestartCount, DateTimeOffset.UtcNow));
        var (events, error) = await StartRunAsync(cmd.Origin, before);
        if (events is null) return;
        if (error is not null) replyTo.Tell(new CommandRejected(RejectionCode.Internal, error));
        else replyTo.Tell(new ContainerCommandAccepted(State.ContainerId, events, Version));
    }

    private async Task OnPause(RequestOrigin origin, bool pause)
    {
        if (!RequireExists()) return;
        if (!State.IsRunning)
        {
            Reject(RejectionCode.Conflict, $"Container {State.ContainerId} is not running");
            return;
        }
        if (pause && State.Status == ContainerStatus.Paused)
        {
            Reject(RejectionCode.Conflict, $"Container {State.ContainerId} is already paused");
            return;
        }
        if (!pause && State.Status != ContainerStatus.Paused)
        {
            Reject(RejectionCode.Conflict, $"Container {State.ContainerId} is not paused");
            return;
        }
        var replyTo = Sender;
        if (!await RuntimeDoAsync(new PauseContainerProcess(State.ContainerId, State.Generation, pause), replyTo)) return;
        await PersistAndAcknowledge(origin, replyTo, pause
            ? new ContainerPaused(State.ContainerId, DateTimeOffset.UtcNow)
            : new ContainerUnpaused(State.ContainerId, DateTimeOffset.UtcNow));
    }

    private async Task OnRename(RenameContainer cmd)
    {
        if (!RequireExists()) return;
        if (State.Name == cmd.NewName)
        {
            Sender.Tell(new ContainerCommandAccepted(cmd.ContainerId, [], Version));
            return;
        }
        await PersistAndAcknowledge(cmd.Origin, Sender, new ContainerRenamed(cmd.ContainerId, State.Name, cmd.NewName, DateTimeOffset.UtcNow));
    }

    private async Task OnRemove(RemoveContainer cmd)
    {
        if (!RequireExists()) return;
        var replyTo = Sender;
        if (State.IsRunning && !cmd.Force)
        {
            Reject(RejectionCode.Conflict,
                $"cannot remove container \"/{State.Name}\": container is {State.Status.ToString().ToLowerInvariant()}: stop the container before removing or force remove");
            return;
        }
        var events = new List<IContainerEvent>();
        if (State.IsRunning)
        {
            var exited = await StopProcessAsync(Signal.Kill, 0, replyTo);
            if (exited is null) return;
            events.Add(new ContainerExited(State.ContainerId, exited.Generation, exited.ExitCode, exited.OomKilled, exited.At));
        }
        if (!await RuntimeDoAsync(new RemoveContainerFiles(State.ContainerId), replyTo)) return;
        events.Add(new ContainerRemoved(State.ContainerId, DateTimeOffset.UtcNow));
        if (!await PersistAsync(events, cmd.Origin)) return;
        replyTo.Tell(new ContainerCommandAccepted(State.ContainerId, events, Version));
        NotifyWaiters(exited: events.Count > 1, removed: true);
    }

    private async Task RecordWhileRunning(RequestOrigin origin, IContainerEvent e)
    {
        if (!RequireExists()) return;
        if (!State.IsRunning)
        {
            Reject(RejectionCode.Conflict, $"container {State.ContainerId} is not running");
            return;
        }
        await PersistAndAcknowledge(origin, Sender, e);
    }

    private async Task Record(RequestOrigin origin, IContainerEvent e)
    {
        if (!RequireExists()) return;
        await PersistAndAcknowledge(origin, Sender, e);
    }

    private void OnWait(WaitForContainer m)
    {
        if (!State.Exists && State.Desired != DesiredState.Removed)
        {
            Reject(RejectionCode.NotFound, $"No such container: {m.ContainerId}");
            return;
        }
        var done = m.Condition switch
        {
            WaitCondition.NotRunning => !State.IsRunning && State.Status != ContainerStatus.Restarting,
            WaitCondition.Removed => !State.Exists,
            _ => !State.Exists,
        };
        if (done) Sender.Tell(new ContainerWaitResult(State.ContainerId, State.ExitCode, State.Error.Length > 0 ? State.Error : null));
        else _waiters.Add((Sender, m.Condition));
    }

    private void NotifyWaiters(bool exited, bool removed)
    {
        var result = new ContainerWaitResult(State.ContainerId, State.ExitCode, State.Error.Length > 0 ? State.Error : null);
        _waiters.RemoveAll(w =>
        {
            var met = w.Condition switch
            {
                WaitCondition.Removed => removed,
                _ => exited || removed,
            };
            if (met) w.ReplyTo.Tell(result);
            return met;
        });
    }

    private async Task OnProcessExited(ContainerProcessExited m)
    {
        // Only the current run's exit counts; a late report of an older run changes nothing.
        if (!State.Exists || m.Generation != State.Generation || !State.IsRunning) return;
        if (!await PersistAsync([new ContainerExited(State.ContainerId, m.Generation, m.ExitCode, m.OomKilled, m.At)], RequestOrigin.System()))
            return;
        await AfterExitAsync(RequestOrigin.System());
    }

    /// <summary>After an exit: wake waiters, then the restart policy or auto-removal.</summary>
    private async Task AfterExitAsync(RequestOrigin origin)
    {
        NotifyWaiters(exited: true, removed: false);
        if (ContainerFold.ShouldRestart(State, State.ExitCode))
        {
            // Docker's backoff: 100 ms doubling per restart, capped; a run of over 10 s resets it.
            var ranFor = (State.FinishedAt ?? DateTimeOffset.UtcNow) - (State.StartedAt ?? DateTimeOffset.UtcNow);
            var delay = ranFor > TimeSpan.FromSeconds(10)
                ? TimeSpan.FromMilliseconds(100)
                : TimeSpan.FromMilliseconds(Math.Min(MaxBackoff.TotalMilliseconds, 100 * Math.Pow(2, Math.Min(State.RestartCount, 16))));
            Timers.StartSingleTimer("restart", new RestartByPolicy(State.Generation), delay);
            return;
        }
        if (State.Definition?.AutoRemove == true && State.Exists)
            await AutoRemoveAsync(origin);
    }

    /// <summary>
    /// <c>--rm</c>: the container is gone from the API as soon as its removal is recorded (waiters — the CLI's
    /// <c>wait?condition=removed</c> — are answered then); its files are removed behind that. Files a crash leaves
    /// behind are released by the node's runtime on its next start (a removed container is not its own any more).
    /// </summary>
    private async Task AutoRemoveAsync(RequestOrigin origin)
    {
        if (!await PersistAsync([new ContainerRemoved(State.ContainerId, DateTimeOffset.UtcNow)], origin)) return;
        NotifyWaiters(exited: false, removed: true);
        try
        {
            _ = RuntimeAsker.AskAsync(Context, await RuntimeAsync(), new RemoveContainerFiles(State.ContainerId), RuntimeTimeout); // not awaited: the entity may stop
        }
        catch (RuntimeUnavailableException ex)
        {
            Log.Warning("{0}: auto-remove could not clean up on {1}: {2}", StreamKey, State.Node, ex.Message);
        }
    }

    private async Task OnRestartByPolicy(RestartByPolicy m)
    {
        if (m.AfterGeneration != State.Generation || State.IsRunning || State.Desired != DesiredState.Running) return;
        await StartRunAsync(RequestOrigin.System(),
            [new ContainerRestarted(State.ContainerId, "restart policy " + StoredWords<RestartPolicyName>.Of(State.Definition!.RestartPolicy.Name), State.RestartCount + 1, DateTimeOffset.UtcNow)]);
    }

    // A create carries a new random id: no stream to replay, and its append (expecting version 0) is the check.
    protected override bool StartsNewStream(object message) => message is CreateContainer;

    protected override void OnRecovered() => Self.Tell(new ReconcileContainer(State.ContainerId, "entity started"));

    /// <summary>Desired against observed: a container that should run but has exited is restarted if its policy says so.</summary>
    private async Task Reconcile(string reason)
    {
        if (!State.Exists || State.IsRunning || State.Desired != DesiredState.Running) return;
        if (State.Status == ContainerStatus.Restarting && Version > 0)
        {
            // Moved to this node, but the start there was never recorded (the entity stopped in between).
            Log.Info("{0}: reconciling ({1}): moved to {2} but not started; starting", StreamKey, reason, State.Node);
            await StartRunAsync(RequestOrigin.System(), []);
            return;
        }
        if (State.Status == ContainerStatus.Exited && ContainerFold.ShouldRestart(State, State.ExitCode))
        {
            Log.Info("{0}: reconciling ({1}): desired running, observed {2}; restarting", StreamKey, reason, State.Status);
            await OnRestartByPolicy(new RestartByPolicy(State.Generation));
        }
    }

    private async Task<bool> RuntimeDoAsync(IRuntimeMessage message, IActorRef replyTo)
    {
        try
        {
            var runtime = await RuntimeAsync();
            var reply = await RuntimeAsker.AskAsync(Context, runtime, message, RuntimeTimeout);
            if (reply is RuntimeDone) return true;
            replyTo.Tell(new CommandRejected(RejectionCode.Internal, reply is RuntimeFailed f ? f.Error : $"unexpected runtime reply {reply.GetType().Name}"));
        }
        catch (Exception ex) when (ex is AskTimeoutException or RuntimeUnavailableException)
        {
            replyTo.Tell(new CommandRejected(RejectionCode.Unavailable, ex.Message));
        }
        return false;
    }

    private sealed class RuntimeUnavailableException(string message) : Exception(message);

    private async Task<ActorSelection> RuntimeAsync() =>
        Host.Runtimes is null
            ? throw new RuntimeUnavailableException("no runtime directory configured")
            : await Host.Runtimes.RuntimeOfAsync(State.Node, Stopping) ?? throw new RuntimeUnavailableException(NodeUnavailable());

    /// <summary>
    /// The node is gone; a container held there by its local volumes says so (a restart attempt's error is what
    /// <c>docker inspect</c> shows, and must not hide why the container was not moved).
    /// </summary>
    private string NodeUnavailable() =>
        State.Definition is { } d && Volumes.VolumeRegistry.PinningVolumes(d) is { Count: > 0 } volumes
            ? $"node {State.Node} is not available; {Volumes.VolumeRegistry.PinnedReason(volumes, State.Node)}"
            : $"node {State.Node} is not available";

    private Task PersistAndAcknowledge(RequestOrigin origin, IContainerEvent e) => PersistAndAcknowledge(origin, Sender, e);

    private async Task PersistAndAcknowledge(RequestOrigin origin, IActorRef replyTo, params IContainerEvent[] events)
    {
        if (await PersistAsync(events, origin))
            replyTo.Tell(new ContainerCommandAccepted(State.ContainerId, events, Version));
    }

    /// <summary>A probe's result from the node: remembered; recorded as <see cref="ContainerHealthChanged"/> when the status changes.</summary>
    private async Task OnHealthProbed(ContainerHealthProbed m)
    {
        // Only the current run, while it runs (a late result after a pause or exit changes nothing).
        if (!State.Exists || m.Generation != State.Generation || State.Status != ContainerStatus.Running || State.Health is not { } health) return;
        _healthLog = [.. (_healthLog ?? health.Log).TakeLast(HealthcheckResult.MaxLogEntries - 1), m.Result];
        _failingStreak = (m.Generation, m.FailingStreak);
        if (m.Status == health.Status) return;
        await PersistAsync([new ContainerHealthChanged(State.ContainerId, m.Generation, m.Status, m.FailingStreak, m.Result, DateTimeOffset.UtcNow)],
            RequestOrigin.System());
    }

    private ContainerSnapshot Snapshot()
    {
        var snapshot = SnapshotOf(State, Version, Host.NodeName);
        if (snapshot.Health is not { } health) return snapshot;
        return snapshot with
        {
            Health = health with
            {
                FailingStreak = _failingStreak is { } f && f.Generation == State.Generation ? f.Streak : health.FailingStreak,
                Log = _healthLog ?? health.Log,
            },
        };
    }

    /// <summary>What <see cref="GetContainer"/> answers: the state folded from the stream up to <paramref name="version"/>.</summary>
    public static ContainerSnapshot SnapshotOf(ContainerState state, long version, string hostedOn) => new(state.ContainerId, state.Exists,
        state.Name, state.Definition, state.Node, state.Status, state.Desired.ToString().ToLowerInvariant(), state.Pid, state.ExitCode,
        state.OomKilled, state.Error, state.Generation, state.RestartCount, state.CreatedAt, state.StartedAt, state.FinishedAt, state.ExecIds,
        version, hostedOn)
    { Health = state.Health };
}
