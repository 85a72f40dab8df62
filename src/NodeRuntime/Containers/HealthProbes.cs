using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using Flotilla.Contracts.Containers;
using Flotilla.NodeRuntime.Oci;

namespace Flotilla.NodeRuntime.Containers;

/// <summary>
/// Runs the healthchecks of this host's running containers, as dockerd's daemon/health.go does: each probe is an exec
/// in the container (<c>runc exec</c>, its namespaces, user and working directory) with the check's timeout; a success
/// makes the container healthy, <c>retries</c> failures in a row unhealthy, and failures within the start period (while
/// still starting) do not count. Every result goes to <paramref name="report"/> (the container's entity, which records
/// only changes of status). A pause stops probing (dockerd then says unhealthy), an unpause resumes it.
/// </summary>
public sealed class HealthProbes(ConmonMonitor monitor, Action<ContainerHealthProbed> report)
{
    private readonly ConcurrentDictionary<string, Prober> _probers = new();

    /// <summary>Containers being probed now (for tests and logs).</summary>
    public int Count => _probers.Count;

    /// <summary>
    /// Probes run <paramref name="generation"/> of <paramref name="id"/> from now on, replacing any earlier prober of it.
    /// <paramref name="startedAt"/>: when the run started (start period and start interval count from it);
    /// <paramref name="status"/>/<paramref name="failingStreak"/>: where the health stands (starting for a new run, the
    /// recorded health when an engine re-adopts a running container).
    /// </summary>
    public void Start(string id, long generation, ContainerDefinition definition, DateTimeOffset startedAt, HealthStatus status, int failingStreak,
        bool paused = false)
    {
        if (definition.Healthcheck is not { } check || !check.Probes()) return;
        var prober = new Prober(this, id, generation, check, definition.Shell, startedAt, status, failingStreak);
        if (_probers.TryGetValue(id, out var old)) old.Stop();
        _probers[id] = prober;
        if (!paused) prober.Resume();
        else prober.Pause();
    }

    /// <summary>Stops probing the container (any run, or only <paramref name="generation"/>); a probe in flight is abandoned.</summary>
    public void Stop(string id, long? generation = null)
    {
        if (_probers.TryGetValue(id, out var prober) && (generation is null || prober.Generation == generation)
            && _probers.TryRemove(new KeyValuePair<string, Prober>(id, prober)))
            prober.Stop();
    }

    public void Pause(string id)
    {
        if (_probers.TryGetValue(id, out var prober)) prober.Pause();
    }

    public void Resume(string id)
    {
        if (_probers.TryGetValue(id, out var prober)) prober.Resume();
    }

    public void StopAll()
    {
        foreach (var id in _probers.Keys) Stop(id);
    }

    /// <summary>One run of the check: the process's exit code and output, -1 when it could not run or ran out of time.</summary>
    public async Task<HealthcheckResult> ProbeAsync(string id, HealthcheckConfig check, IReadOnlyList<string> shell, CancellationToken cancellationToken)
    {
        var start = DateTimeOffset.UtcNow;
        var args = check.ProbeArgs(shell);
        if (args.Count == 0) return new HealthcheckResult(start, DateTimeOffset.UtcNow, -1, $"healthcheck for container {id} has no command");
        var output = new LimitedOutput(HealthcheckResult.MaxOutputBytes);
        var timeout = check.EffectiveTimeout();
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        try
        {
            // The container's own user, working directory and environment (ExecSpec's defaults), as dockerd's probe.
            var code = await monitor.ExecAsync(id, new ExecSpec { Args = args }, null, output, output, deadline.Token);
            return new HealthcheckResult(start, DateTimeOffset.UtcNow, code, output.Text());
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // runc exec and the probe under it are killed (RuncDriver kills the process tree on cancellation).
            var text = output.Text();
            var message = $"Health check exceeded timeout ({GoDuration.Format(timeout)})";
            return new HealthcheckResult(start, DateTimeOffset.UtcNow, -1, text.Length > 0 ? $"{message}: {text}" : message);
        }
        catch (Exception ex) when (ex is OciRuntimeException or IOException or InvalidOperationException or UnknownUserException
                                       or UnauthorizedAccessException or NotSupportedException)
        {
            return new HealthcheckResult(start, DateTimeOffset.UtcNow, -1, ex is OciRuntimeException oci ? oci.RuntimeMessage : ex.Message);
        }
    }

    /// <summary>The health of one run and its probing loop (dockerd's <c>monitor</c> and <c>handleProbeResult</c>).</summary>
    private sealed class Prober(HealthProbes owner, string id, long generation, HealthcheckConfig check, IReadOnlyList<string> shell,
        DateTimeOffset startedAt, HealthStatus status, int failingStreak)
    {
        private readonly Lock _lock = new();
        private CancellationTokenSource? _loop;
        private bool _stopped;
        private HealthStatus _status = status;
        private int _failingStreak = failingStreak;

        public long Generation => generation;

        public void Resume()
        {
            lock (_lock)
            {
                if (_stopped || _loop is not null) return;
                _loop = new CancellationTokenSource();
                var token = _loop.Token;
                _ = Task.Run(() => LoopAsync(token), CancellationToken.None);
            }
        }

        /// <summary>dockerd closes the monitor on a pause, and a closed monitor reads unhealthy until the next probe.</summary>
        public void Pause()
        {
            lock (_lock)
            {
                _status = HealthStatus.Unhealthy;
                _loop?.Cancel(); // not disposed: the loop may still be looking at its token
                _loop = null;
            }
        }

        public void Stop()
        {
            lock (_lock)
            {
                _stopped = true;
                _loop?.Cancel(); // not disposed: the loop may still be looking at its token
                _loop = null;
            }
        }

        private TimeSpan NextInterval()
        {
            // The start interval applies while starting within the start period (dockerd's getInterval).
            if (DateTimeOffset.UtcNow - startedAt >= check.EffectiveStartPeriod()) return check.EffectiveInterval();
            lock (_lock) return _status == HealthStatus.Starting ? check.EffectiveStartInterval() : check.EffectiveInterval();
        }

        private async Task LoopAsync(CancellationToken token)
        {
            try
            {
                while (true)
                {
                    await Task.Delay(NextInterval(), token);
                    var result = await owner.ProbeAsync(id, check, shell, token);
                    ContainerHealthProbed probed;
                    lock (_lock)
                    {
                        // Stopped or paused while probing: the result is dropped, as dockerd drops it.
                        if (token.IsCancellationRequested) return;
                        Handle(result);
                        probed = new ContainerHealthProbed(id, generation, _status, _failingStreak, result);
                    }
                    owner.Report(probed);
                }
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
            }
        }

        private void Handle(HealthcheckResult result)
        {
            if (result.ExitCode == 0)
            {
                _failingStreak = 0;
                _status = HealthStatus.Healthy;
                return;
            }
            // Still starting and within the start period: a failure does not count (nor is the container unhealthy).
            if (_status == HealthStatus.Starting && result.Start - startedAt < check.EffectiveStartPeriod()) return;
            _failingStreak++;
            if (_failingStreak >= check.EffectiveRetries()) _status = HealthStatus.Unhealthy;
        }
    }

    private void Report(ContainerHealthProbed probed) => report(probed);

    /// <summary>Keeps the first <c>limit</c> bytes written (stdout and stderr together), then notes that more was lost.</summary>
    private sealed class LimitedOutput(int limit) : Stream
    {
        private readonly Lock _lock = new();
        private readonly MemoryStream _kept = new();
        private bool _truncated;

        public string Text()
        {
            lock (_lock)
            {
                var text = Encoding.UTF8.GetString(_kept.GetBuffer(), 0, (int)_kept.Length);
                return _truncated ? text + "..." : text;
            }
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            lock (_lock)
            {
                var keep = Math.Max(0, Math.Min(limit - (int)_kept.Length, buffer.Length));
                _kept.Write(buffer[..keep]);
                if (keep < buffer.Length) _truncated = true;
            }
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Write(buffer.Span);
            return ValueTask.CompletedTask;
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        {
            Write(buffer.AsSpan(offset, count));
            return Task.CompletedTask;
        }

        public override void Flush()
        {
        }

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}

/// <summary>Go's <c>time.Duration.String()</c> (<c>30s</c>, <c>1.5s</c>, <c>500ms</c>, <c>1m30s</c>), for dockerd's messages.</summary>
public static class GoDuration
{
    public static string Format(TimeSpan duration)
    {
        var ns = duration.Ticks * 100;
        if (ns == 0) return "0s";
        var sign = ns < 0 ? "-" : "";
        ns = Math.Abs(ns);
        if (ns < 1_000) return $"{sign}{ns}ns";
        if (ns < 1_000_000) return $"{sign}{Fraction(ns, 1_000)}µs";
        if (ns < 1_000_000_000) return $"{sign}{Fraction(ns, 1_000_000)}ms";
        var hours = ns / 3_600_000_000_000;
        var minutes = ns / 60_000_000_000 % 60;
        var seconds = Fraction(ns % 60_000_000_000, 1_000_000_000);
        var text = new StringBuilder(sign);
        if (hours > 0) text.Append(hours.ToString(CultureInfo.InvariantCulture)).Append('h');
        if (hours > 0 || minutes > 0) text.Append(minutes.ToString(CultureInfo.InvariantCulture)).Append('m');
        return text.Append(seconds).Append('s').ToString();
    }

    private static string Fraction(long value, long unit)
    {
        var whole = (value / unit).ToString(CultureInfo.InvariantCulture);
        var rest = value % unit;
        if (rest == 0) return whole;
        var digits = unit.ToString(CultureInfo.InvariantCulture).Length - 1;
        return whole + "." + rest.ToString(CultureInfo.InvariantCulture).PadLeft(digits, '0').TrimEnd('0');
    }
}
