using System.Diagnostics;

namespace Flotilla.NodeRuntime.Fencing;

/// <summary>
/// Whether this host may run containers right now: only while its lease is confirmed, up to a deadline on the
/// monotonic clock (<see cref="Stopwatch.GetTimestamp"/>, CLOCK_MONOTONIC: a wall-clock step changes nothing). The
/// lease keeper moves the deadline after every renewal; the runtime asks before and after every start. A host
/// without leases (the all-in-one: nobody else could start its containers) is <see cref="Unfenced"/>.
/// </summary>
public sealed class HostFence
{
    private readonly Lock _lock = new();
    private readonly bool _enforced;
    private long _epoch;
    private long _deadline;
    private string? _revoked;

    private HostFence(bool enforced) => _enforced = enforced;

    /// <summary>A host that holds no lease and needs none.</summary>
    public static HostFence Unfenced() => new(false);

    /// <summary>A host that may run containers only under a confirmed lease (none yet).</summary>
    public static HostFence Leased() => new(true);

    /// <summary>The lease epoch of this engine process: the fencing token every run it starts carries (0 without leases).</summary>
    public long Epoch
    {
        get
        {
            lock (_lock) return _epoch;
        }
    }

    /// <summary>The lease of <paramref name="epoch"/> holds until <paramref name="deadline"/> (a <see cref="Stopwatch"/> timestamp).</summary>
    public void Confirm(long epoch, long deadline)
    {
        lock (_lock)
        {
            if (_revoked is not null || epoch < _epoch) return;
            _epoch = epoch;
            if (deadline > _deadline) _deadline = deadline;
        }
    }

    /// <summary>No more runs from this process, whatever the lease says (lost, or released on the way out).</summary>
    public void Revoke(string reason)
    {
        lock (_lock) _revoked ??= reason;
    }

    /// <summary>Why a run may not start (or keep running) now; null when it may.</summary>
    public string? RunRefusal()
    {
        if (!_enforced) return null;
        lock (_lock)
        {
            if (_revoked is not null) return $"this host may not run containers: {_revoked}";
            if (_epoch == 0) return "this host holds no lease yet";
            var left = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), _deadline);
            return left > TimeSpan.Zero ? null : $"this host's lease (epoch {_epoch}) is not confirmed since {(-left).TotalSeconds:F1} s: fenced";
        }
    }
}
