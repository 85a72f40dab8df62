using System.Diagnostics;
using Flotilla.Cluster.EventStore;
using Flotilla.Contracts;
using Flotilla.Contracts.Nodes;
using Flotilla.NodeRuntime.Fencing;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Flotilla.Cluster.Nodes;

/// <summary>
/// The timing of host leases (docs/ARCHITECTURE.md, "Never twice"). A lease lasts <see cref="Ttl"/> from each renewal
/// (database time); the engine renews every <see cref="RenewEvery"/>; the host's watchdog kills its containers
/// <see cref="KillMargin"/> before the lease can expire (counted from the renewal's send time, on the host's monotonic
/// clock); the scheduler moves them only <see cref="MoveMargin"/> after it expired.
/// </summary>
public sealed record LeaseTiming(TimeSpan Ttl, TimeSpan RenewEvery, TimeSpan KillMargin, TimeSpan MoveMargin)
{
    public static readonly LeaseTiming Default = new(TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1),
        TimeSpan.FromMilliseconds(500));

    /// <summary>How long a renewal confirms the host may run containers, from the moment it was sent.</summary>
    public TimeSpan ConfirmFor => Ttl - KillMargin;
}

/// <summary>
/// Holds this host's lease while the engine runs: takes it before anything else is built (<see cref="TakeAsync"/>:
/// the same epoch when the previous engine's lease is still valid — re-adoption — else a new one, fencing whatever ran
/// before), renews it, and passes every renewal on to the <see cref="HostFence"/> (the runtime's own check) and the
/// host's watchdog. A lost lease (it expired before a renewal got through) kills every container here and ends the
/// process (<see cref="Lost"/>): the scheduler may be starting them elsewhere already. Its events wait until the event
/// store is up (<see cref="Attach"/>, as a hosted service).
/// </summary>
public sealed class HostLeaseKeeper(
    HostLeaseStore store,
    HostFence fence,
    WatchdogClient watchdog,
    CgroupFence cgroups,
    string host,
    LeaseTiming timing,
    ILogger log) : IHostedService
{
    private readonly TaskCompletionSource<string> _lost = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _lock = new();
    private readonly List<INodeEvent> _unrecorded = [];
    private IEventJournal? _journal;
    private Task _renewing = Task.CompletedTask;
    private long _epoch;
    private bool _taken;

    /// <summary>Completes with the reason when the lease was lost; the process should exit.</summary>
    public Task<string> Lost => _lost.Task;

    public long Epoch => Volatile.Read(ref _epoch);

    public HostFence Fence => fence;

    /// <summary>Where this keeper's events go once the event store is up; what happened before is recorded then.</summary>
    public HostLeaseKeeper Attach(IEventJournal journal)
    {
        _journal = journal;
        return this;
    }

    /// <summary>Takes the lease, confirms the fence and the watchdog, and starts renewing. Idempotent.</summary>
    public async Task TakeAsync(CancellationToken cancellationToken)
    {
        if (_taken) return;
        LeaseGrant grant;
        long sent;
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await store.EnsureTableAsync(cancellationToken);
                sent = Stopwatch.GetTimestamp();
                grant = await store.AcquireAsync(host, timing.Ttl, cancellationToken);
                _epoch = grant.Epoch;
                fence.Confirm(grant.Epoch, Deadline(sent));
                break;
            }
            catch (Exception ex) when (ex is not OperationCanceledException && attempt < 30)
            {
                log.LogWarning("Could not take the host lease of {Host} yet ({Message}); trying again", host, ex.Message);
                await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
            }
        }
        _taken = true;
        await ConfirmWatchdogAsync(grant.Epoch, Deadline(sent), cancellationToken);
        _renewing = Task.Run(() => RenewLoopAsync(_stop.Token), CancellationToken.None);
        log.LogInformation("Host lease of {Host}: epoch {Epoch} ({How})", host, grant.Epoch,
            grant.Continued ? "continued: containers kept" : grant.PreviousEpoch is { } p ? $"epoch {p} had expired: its runs are fenced" : "first");
        Record(new HostLeaseAcquired(host, grant.Epoch, grant.Continued, grant.PreviousEpoch, grant.ExpiresAt, DateTimeOffset.UtcNow));

        // What the watchdog fenced while the engine was away.
        foreach (var fenced in HostWatchdog.TakeRecords(watchdog.Paths))
            Record(new ContainersFenced(host, fenced.Epoch, fenced.ContainerIds, "watchdog", fenced.Reason, fenced.At));
        if (!grant.Continued && grant.PreviousEpoch is { } previous)
        {
            // The watchdog should have done this before the old lease expired; if it could not (it was not running),
            // nothing of the old epoch may go on now.
            var killed = cgroups.KillAll();
            if (killed.Count > 0)
            {
                log.LogWarning("Killed {Count} container(s) of the expired lease epoch {Epoch}", killed.Count, previous);
                Record(new ContainersFenced(host, previous, killed, "engine", "the lease had expired while the engine was away", DateTimeOffset.UtcNow));
            }
        }
    }

    /// <summary>As a hosted service: the lease (if not taken yet), then the events so far.</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await TakeAsync(cancellationToken);
        await FlushAsync();
    }

    private long Deadline(long sent) => sent + (long)(timing.ConfirmFor.TotalSeconds * Stopwatch.Frequency);

    private async Task RenewLoopAsync(CancellationToken cancellationToken)
    {
        var epoch = Epoch;
        var failures = 0;
        var last = Stopwatch.GetTimestamp();
        while (!cancellationToken.IsCancellationRequested)
        {
            var wait = timing.RenewEvery - Stopwatch.GetElapsedTime(last);
            try
            {
                if (wait > TimeSpan.Zero) await Task.Delay(wait, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            var sent = last = Stopwatch.GetTimestamp();
            try
            {
                using var attempt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                attempt.CancelAfter(timing.ConfirmFor);
                var expires = await store.RenewAsync(host, epoch, timing.Ttl, attempt.Token);
                if (expires is null)
                {
                    await LoseAsync(epoch, "the lease expired before a renewal got through");
                    return;
                }
                fence.Confirm(epoch, Deadline(sent));
                if (failures > 0) log.LogInformation("Host lease of {Host} renewed again after {Failures} failed attempt(s)", host, failures);
                failures = 0;
                await ConfirmWatchdogAsync(epoch, Deadline(sent), cancellationToken);
            }
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
            {
                if (failures++ % 10 == 0)
                    log.LogWarning("Could not renew the host lease of {Host} ({Message}); containers are fenced {Seconds:F1} s after the last renewal",
                        host, ex is OperationCanceledException ? "timed out" : ex.Message, timing.ConfirmFor.TotalSeconds);
            }
        }
    }

    private async Task ConfirmWatchdogAsync(long epoch, long deadline, CancellationToken cancellationToken)
    {
        try
        {
            await watchdog.ConfirmAsync(epoch, deadline, cancellationToken);
        }
        catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or InvalidOperationException
                                       or System.ComponentModel.Win32Exception)
        {
            log.LogWarning("The host watchdog did not take the lease confirmation: {Message}", ex.Message);
        }
    }

    private async Task LoseAsync(long epoch, string reason)
    {
        fence.Revoke("the host lease was lost: " + reason);
        var killed = cgroups.KillAll();
        log.LogError("Host lease of {Host} (epoch {Epoch}) lost: {Reason}; killed {Count} container(s); exiting", host, epoch, reason, killed.Count);
        Record(new ContainersFenced(host, epoch, killed, "engine", reason, DateTimeOffset.UtcNow));
        await FlushAsync();
        _lost.TrySetResult(reason);
    }

    /// <summary>
    /// After the engine stopped its containers on the way out: no run from now on, the lease ended at once (the
    /// scheduler need not wait for it to expire) and the watchdog stands down. Kept when anything still runs.
    /// </summary>
    public async Task ReleaseAsync(CancellationToken cancellationToken)
    {
        fence.Revoke("the engine is leaving");
        await _stop.CancelAsync();
        await _renewing;
        var left = cgroups.KillAll();
        if (cgroups.Occupied() is { Count: > 0 } still)
        {
            log.LogWarning("Host lease of {Host} kept to expire: {Count} container(s) still have processes", host, still.Count);
            return;
        }
        if (left.Count > 0) log.LogWarning("Killed {Count} container(s) that were still running on the way out", left.Count);
        try
        {
            await store.ReleaseAsync(host, Epoch, cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            log.LogWarning("Could not release the host lease of {Host} ({Message}); it expires in {Seconds:F0} s", host, ex.Message, timing.Ttl.TotalSeconds);
        }
        try
        {
            await watchdog.ReleaseAsync(cancellationToken);
        }
        catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException)
        {
            log.LogWarning("The host watchdog did not take the release: {Message}", ex.Message);
        }
    }

    /// <summary>
    /// Renewals go on while the process stops: services stop together, and the node's hand-over (stop its containers,
    /// then <see cref="ReleaseAsync"/>) may take their grace period; without a release the lease expires after the exit.
    /// </summary>
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private void Record(INodeEvent e)
    {
        lock (_lock) _unrecorded.Add(e);
        if (_journal is not null) _ = FlushAsync();
    }

    private async Task FlushAsync()
    {
        if (_journal is not { } journal) return;
        List<INodeEvent> pending;
        lock (_lock)
        {
            pending = [.. _unrecorded];
            _unrecorded.Clear();
        }
        var key = NodeStreams.Key(host);
        foreach (var e in pending)
        {
            for (var attempt = 0; attempt < 4; attempt++)
            {
                try
                {
                    var version = await journal.VersionAsync(key);
                    await journal.AppendAsync(key, version, [e], EventMetadata.From(RequestOrigin.System(), host));
                    break;
                }
                catch (StreamVersionConflictException)
                {
                }
                catch (Exception ex)
                {
                    log.LogWarning("Could not record {Event} for {Host}: {Message}", e.GetType().Name, host, ex.Message);
                    break;
                }
            }
        }
    }
}
