using System.Collections.Concurrent;
using Akka.Actor;
using Akka.Event;
using Flotilla.Contracts.Containers;
using Flotilla.Contracts.Nodes;
using Flotilla.NodeRuntime.Containers;
using Flotilla.NodeRuntime.Fencing;
using Flotilla.NodeRuntime.Oci;

namespace Flotilla.NodeRuntime;

/// <summary>
/// One per node (<c>/user/runtime</c>): carries out the container entities' requests on this host and
/// reports every exit to the entity, with the run generation it belongs to. Work runs as tasks piped
/// back to the asker, so a slow stop of one container does not hold up the others. On start it
/// re-adopts what still runs and reports what exited while the engine was down.
/// </summary>
public sealed class RuntimeActor : ReceiveActor
{
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly NodeContainerRuntime _runtime;
    private readonly IActorRef _containers;
    /// <summary>Containers whose exit is being watched (touched from watcher tasks, hence concurrent).</summary>
    private readonly ConcurrentDictionary<string, long> _watched = new();

    private readonly string? _nodeName;
    private readonly RuntimeCallerPolicy? _callers;
    private readonly Func<RuntimeRequestRefused, Task>? _recordRefusal;
    private readonly HostFence _fence;
    /// <summary>Healthchecks of the containers running here; results go to their entities.</summary>
    private readonly HealthProbes _health;

    /// <param name="nodeName">This node's name: after re-adoption, runs the cluster has moved elsewhere are stopped and removed here.</param>
    /// <param name="callers">Who may ask for work; null only in tests that drive the actor directly.</param>
    /// <param name="recordRefusal">Records a refused request as an audit event.</param>
    /// <param name="fence">Whether this host's lease lets it run containers now; null: a host without leases.</param>
    public RuntimeActor(NodeContainerRuntime runtime, IActorRef containers, string? nodeName = null, RuntimeCallerPolicy? callers = null,
        Func<RuntimeRequestRefused, Task>? recordRefusal = null, HostFence? fence = null)
    {
        _fence = fence ?? HostFence.Unfenced();
        _runtime = runtime;
        _containers = containers;
        _nodeName = nodeName;
        _callers = callers;
        _recordRefusal = recordRefusal;
        _health = new HealthProbes(runtime.Monitor, probed => containers.Tell(probed));

        // First: requests that are not the named container entity's own (or name an invalid id) go no further.
        Receive<IRuntimeMessage>(m => Refusal(m) is not null, Refuse);
        Receive<RunContainerProcess>(m => RunAsync(m).PipeTo(Sender));
        Receive<StopContainerProcess>(m =>
        {
            _health.Stop(m.ContainerId);
            StopAsync(m).PipeTo(Sender);
        });
        Receive<SignalContainerProcess>(m => Do(m.ContainerId, () => _runtime.Monitor.KillAsync(m.ContainerId, m.Signal.Name)).PipeTo(Sender));
        Receive<PauseContainerProcess>(m =>
        {
            // No probes of a paused container (dockerd stops its monitor); they resume with the container.
            var health = _health;
            Do(m.ContainerId, async () =>
            {
                if (m.Pause)
                {
                    await _runtime.Monitor.PauseAsync(m.ContainerId);
                    health.Pause(m.ContainerId);
                }
                else
                {
                    await _runtime.Monitor.ResumeAsync(m.ContainerId);
                    health.Resume(m.ContainerId);
                }
            }).PipeTo(Sender);
        });
        Receive<RemoveContainerFiles>(m =>
        {
            // Auto-removal tells without waiting for an answer; others ask.
            var replyTo = Sender;
            _health.Stop(m.ContainerId);
            var removal = Do(m.ContainerId, () => _runtime.RemoveAsync(m.ContainerId));
            if (!replyTo.IsNobody()) removal.PipeTo(replyTo);
            else
            {
                var log = _log;
                removal.ContinueWith(t =>
                {
                    if (t.Result is RuntimeFailed failed) log.Warning("{0}: removal failed: {1}", m.ContainerId[..12], failed.Error);
                }, TaskContinuationOptions.OnlyOnRanToCompletion);
            }
        });
        Receive<Status.Success>(_ => _log.Debug("re-adoption done"));
        Receive<Status.Failure>(f => _log.Error(f.Cause, "re-adoption failed"));
    }

    public static Props PropsFor(NodeContainerRuntime runtime, IActorRef containers, string? nodeName = null, RuntimeCallerPolicy? callers = null,
        Func<RuntimeRequestRefused, Task>? recordRefusal = null, HostFence? fence = null) =>
        Props.Create(() => new RuntimeActor(runtime, containers, nodeName, callers, recordRefusal, fence));

    private string? Refusal(IRuntimeMessage m) =>
        !ContainerIds.IsValid(m.ContainerId) ? "invalid container id" : _callers?.Refusal(Sender, m.ContainerId);

    private void Refuse(IRuntimeMessage m)
    {
        var reason = Refusal(m)!;
        var sender = Sender.IsNobody() ? "(none)" : Sender.Path.ToString();
        var id = ContainerIds.IsValid(m.ContainerId) ? m.ContainerId : new string((m.ContainerId ?? "").Take(80).Select(c => char.IsControl(c) ? '?' : c).ToArray());
        _log.Warning("refused {0} for {1} from {2}: {3}", m.GetType().Name, id, sender, reason);
        if (!Sender.IsNobody()) Sender.Tell(new RuntimeFailed(m.ContainerId ?? "", $"refused by the runtime of {_nodeName ?? "this node"}: {reason}"));
        if (_recordRefusal is { } record)
        {
            var log = _log;
            record(new RuntimeRequestRefused(_nodeName ?? "", sender, m.GetType().Name, id, reason, DateTimeOffset.UtcNow))
                .ContinueWith(t => log.Warning("could not record a refused runtime request: {0}", t.Exception?.GetBaseException().Message),
                    TaskContinuationOptions.OnlyOnFaulted);
        }
    }

    protected override void PreStart() => AdoptAsync().PipeTo(Self);

    protected override void PostStop() => _health.StopAll();

    private async Task<IRuntimeMessage> RunAsync(RunContainerProcess m)
    {
        // A host may run containers only under a confirmed lease: else another host may be about to start this one.
        var epoch = _fence.Epoch;
        if (_fence.RunRefusal() is { } refused)
        {
            _log.Warning("{0}: run {1} refused: {2}", m.ContainerId[..12], m.Generation, refused);
            return new ContainerProcessFailed(m.ContainerId, m.Generation, $"failed to create task for container: {refused}", 128);
        }
        try
        {
            var pid = await _runtime.RunAsync(m.ContainerId, m.Name, m.Generation, m.Definition);
            // The lease may have lapsed while runc worked: then this run must not outlive the check.
            if ((_fence.RunRefusal() ?? (_fence.Epoch != epoch ? "the lease epoch changed" : null)) is { } lapsed)
            {
                _log.Warning("{0}: run {1} killed right after its start: {2}", m.ContainerId[..12], m.Generation, lapsed);
                await _runtime.Monitor.StopAsync(m.ContainerId, TimeSpan.Zero, "KILL");
                return new ContainerProcessFailed(m.ContainerId, m.Generation, $"failed to create task for container: {lapsed}", 128);
            }
            Watch(m.ContainerId, m.Generation);
            var startedAt = DateTimeOffset.UtcNow;
            _health.Start(m.ContainerId, m.Generation, m.Definition, startedAt, HealthStatus.Starting, 0);
            return new ContainerProcessStarted(m.ContainerId, m.Generation, pid, startedAt, epoch);
        }
        catch (Exception ex) when (ex is OciRuntimeException or InvalidOperationException or IOException or UnknownUserException
                                       or ArgumentException or UnauthorizedAccessException)
        {
            var message = ex is OciRuntimeException oci ? oci.RuntimeMessage : ex.Message;
            _log.Warning("{0}: start of run {1} failed: {2}", m.ContainerId[..12], m.Generation, message);
            return new ContainerProcessFailed(m.ContainerId, m.Generation, $"failed to create task for container: {message}", ExitCodeFor(message));
        }
    }

    /// <summary>Docker's convention: 127 command not found, 126 not executable.</summary>
    private static int ExitCodeFor(string message) =>
        message.Contains("not found", StringComparison.OrdinalIgnoreCase) || message.Contains("no such file", StringComparison.OrdinalIgnoreCase) ? 127
        : message.Contains("permission denied", StringComparison.OrdinalIgnoreCase) ? 126
        : 128;

    private async Task<IRuntimeMessage> StopAsync(StopContainerProcess m)
    {
        try
        {
            var exit = await _runtime.Monitor.StopAsync(m.ContainerId, TimeSpan.FromSeconds(Math.Max(0, m.TimeoutSeconds)), m.Signal.Name);
            return new ContainerProcessExited(m.ContainerId, m.Generation, exit.ExitCode, exit.OomKilled, exit.FinishedAt);
        }
        catch (Exception ex) when (ex is OciRuntimeException or InvalidOperationException or IOException)
        {
            return new RuntimeFailed(m.ContainerId, ex.Message);
        }
    }

    private async Task<IRuntimeMessage> Do(string id, Func<Task> action)
    {
        try
        {
            await action();
            return new RuntimeDone(id);
        }
        catch (Exception ex) when (ex is OciRuntimeException or InvalidOperationException or IOException or UnauthorizedAccessException)
        {
            return new RuntimeFailed(id, ex is OciRuntimeException oci ? oci.RuntimeMessage : ex.Message);
        }
    }

    /// <summary>Reports the exit of this run to the entity once conmon records it.</summary>
    private void Watch(string id, long generation)
    {
        if (_watched.TryGetValue(id, out var watching) && watching == generation) return;
        _watched[id] = generation;
        var containers = _containers;
        var monitor = _runtime.Monitor;
        var log = _log;
        var health = _health;
        _ = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    try
                    {
                        var exit = await monitor.WaitForExitAsync(id);
                        containers.Tell(new ContainerProcessExited(id, generation, exit.ExitCode, exit.OomKilled, exit.FinishedAt));
                        return;
                    }
                    catch (ContainerExitUnrecordedException ex)
                    {
                        // conmon died without an exit record and runc says the process does not run: the run is over.
                        log.Warning("{0}: lost the monitor of run {1}: {2}", id[..12], generation, ex.Message);
                        containers.Tell(new ContainerProcessExited(id, generation, 255, false, DateTimeOffset.UtcNow));
                        return;
                    }
                    catch (Exception ex)
                    {
                        // Failing to watch says nothing about the process: never record it as an exit; look again.
                        log.Warning("{0}: watching run {1} failed, retrying: {2}", id[..12], generation, ex.Message);
                        await Task.Delay(TimeSpan.FromSeconds(5));
                    }
                }
            }
            finally
            {
                health.Stop(id, generation);
                _watched.TryRemove(new KeyValuePair<string, long>(id, generation));
            }
        });
    }

    /// <summary>After an engine restart: watch what still runs, report what exited meanwhile.</summary>
    private async Task<Status> AdoptAsync()
    {
        foreach (var id in _runtime.Known())
        {
            if (_runtime.GenerationOf(id) is not { } generation) continue;
            try
            {
                var seen = await _runtime.Monitor.AdoptAsync(id);
                switch (seen.Status)
                {
                    case ObservedStatus.Running or ObservedStatus.Paused:
                        _log.Info("{0}: re-adopted run {1} (pid {2})", id[..12], generation, seen.Pid);
                        Watch(id, generation);
                        _ = ResumeHealthAsync(id, generation);
                        break;
                    case ObservedStatus.Exited:
                        var exit = seen.Exit;
                        _containers.Tell(new ContainerProcessExited(id, generation, exit?.ExitCode ?? 255, exit?.OomKilled ?? false,
                            exit?.FinishedAt ?? DateTimeOffset.UtcNow));
                        break;
                    case ObservedStatus.Missing:
                        _containers.Tell(new ContainerProcessExited(id, generation, 255, false, DateTimeOffset.UtcNow));
                        break;
                }
            }
            catch (Exception ex) when (ex is OciRuntimeException or IOException or InvalidOperationException)
            {
                _log.Warning("{0}: could not re-adopt: {1}", id[..12], ex.Message);
            }
        }
        if (_nodeName is not null) await ReleaseMovedAsync(_nodeName);
        return new Status.Success(null);
    }

    /// <summary>
    /// Healthchecks of a re-adopted run resume where its entity's record stands (status, streak, start time), once the
    /// cluster answers: asked again every 5 s while the run is still watched here.
    /// </summary>
    private async Task ResumeHealthAsync(string id, long generation)
    {
        while (_watched.TryGetValue(id, out var watching) && watching == generation)
        {
            try
            {
                var s = await _containers.Ask<ContainerSnapshot>(new GetContainer(id), TimeSpan.FromSeconds(15));
                if (s.Exists && s.Generation == generation && s.Node == _nodeName && s.Definition is { } definition && s.Health is { } health
                    && s.Status is ContainerStatus.Running or ContainerStatus.Paused && _watched.TryGetValue(id, out var still) && still == generation)
                    _health.Start(id, generation, definition, s.StartedAt ?? DateTimeOffset.UtcNow, health.Status, health.FailingStreak,
                        paused: s.Status == ContainerStatus.Paused);
                return;
            }
            catch (Exception ex) when (ex is AskTimeoutException or TaskCanceledException)
            {
                await Task.Delay(TimeSpan.FromSeconds(5));
            }
        }
    }

    /// <summary>
    /// Containers this host has files for but the cluster placed elsewhere, or on a newer run (they moved while
    /// this host was gone), or removed: whatever of them still runs is stopped — the same container must never run
    /// twice — and their files go.
    /// </summary>
    private async Task ReleaseMovedAsync(string nodeName)
    {
        foreach (var id in _runtime.Known())
        {
            ContainerSnapshot snapshot;
            try
            {
                snapshot = await _containers.Ask<ContainerSnapshot>(new GetContainer(id), TimeSpan.FromSeconds(15));
            }
            catch (Exception ex) when (ex is AskTimeoutException or TaskCanceledException)
            {
                _log.Warning("moved-container check skipped: the container entities did not answer ({0})", ex.Message);
                return; // the cluster is not ready: leave everything; the next start looks again
            }
            var generation = _runtime.GenerationOf(id);
            var ours = snapshot.Exists && snapshot.Node == nodeName && (generation is null || generation == snapshot.Generation);
            if (ours) continue;
            try
            {
                if (_runtime.Monitor.ReadExit(id) is null && _runtime.Monitor.ConmonPid(id) is not null)
                {
                    _log.Warning("{0}: run {1} is no longer this node's ({2} on {3}); stopping it", id[..12], generation,
                        snapshot.Exists ? $"run {snapshot.Generation}" : "removed", snapshot.Node);
                    await _runtime.Monitor.StopAsync(id, TimeSpan.FromSeconds(1), "KILL");
                }
                await _runtime.RemoveAsync(id);
                _log.Info("{0}: removed the files of a container that moved away", id[..12]);
            }
            catch (Exception ex) when (ex is OciRuntimeException or InvalidOperationException or IOException)
            {
                _log.Warning("{0}: could not release a moved container: {1}", id[..12], ex.Message);
            }
        }
    }
}
