// Shared by the multi-host tests and the failover benchmark (bench/Flotilla.Bench.Failover links this file): keep it
// free of xunit and of the tests' Support helpers.
using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace Flotilla.Tests.MultiHost;

/// <summary>One sample: which hosts (1-based) ran each container at <see cref="At"/> (time since the sampler started).</summary>
public sealed record RunSample(TimeSpan At, IReadOnlyDictionary<string, IReadOnlyList<int>> Hosts)
{
    /// <summary>How many runs of <paramref name="id"/> there were (0 when none).</summary>
    public int Runs(string id) => Hosts.TryGetValue(id, out var hosts) ? hosts.Count : 0;

    /// <summary>Whether <paramref name="id"/> ran exactly once, on a host other than <paramref name="host"/>.</summary>
    public bool RunsOnceElsewhere(string id, int host) => Hosts.TryGetValue(id, out var hosts) && hosts.Count == 1 && hosts[0] != host;

    /// <summary>The containers running on <paramref name="host"/>.</summary>
    public IReadOnlyList<string> On(int host) => Hosts.Where(h => h.Value.Contains(host)).Select(h => h.Key).Order(StringComparer.Ordinal).ToList();

    public int MaxRuns => Hosts.Count == 0 ? 0 : Hosts.Values.Max(h => h.Count);
}

/// <summary>A moment a container ran more than once: on every host in <see cref="Hosts"/> at <see cref="At"/>.</summary>
public sealed record RunOverlap(TimeSpan At, string Container, IReadOnlyList<int> Hosts)
{
    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"{At.TotalSeconds:F2} s {Container[..Math.Min(12, Container.Length)]} on h{string.Join("+h", Hosts)}");
}

/// <summary>When a container first ran on a host other than the one it was first seen on.</summary>
public sealed record RunMove(TimeSpan At, int From, int To);

/// <summary>What a <see cref="RunSampler"/> saw over its whole run.</summary>
public sealed record RunReport(
    int Samples,
    int MaxRuns,
    IReadOnlyList<RunOverlap> Overlaps,
    IReadOnlyDictionary<string, int> OriginalHost,
    IReadOnlyDictionary<string, RunMove> FirstElsewhere,
    TimeSpan LongestInterval)
{
    /// <summary>How many distinct sample moments had some container running more than once.</summary>
    public int OverlapMoments => Overlaps.Select(o => o.At).Distinct().Count();

    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture,
            $"{Samples} samples (longest interval {LongestInterval.TotalMilliseconds:F0} ms), max runs of a container {MaxRuns}, " +
            $"{OverlapMoments} moment(s) with a container running twice") +
        (Overlaps.Count == 0 ? "" : ": " + string.Join("; ", Overlaps.Take(12)) + (Overlaps.Count > 12 ? $"; … {Overlaps.Count - 12} more" : ""));
}

/// <summary>
/// Ground truth of which container runs where, sampled from the root namespace every <c>interval</c> (0.1 s): a scan of
/// <c>/proc</c> (no process spawned per sample) that counts, per container id, the live container init processes on each
/// host. A process is the run of container C on host i when its <c>/proc/PID/cgroup</c> puts it in
/// <c>/flotilla-&lt;cluster id&gt;-h&lt;i&gt;/C</c> (the host's <c>--cgroup-parent</c>) and it is its container's PID 1 (the last
/// <c>NSpid</c> of <c>/proc/PID/status</c> is 1). Zombies, SIGSTOPped processes (a paused host's) and a container still in
/// <c>runc init</c> (created, the user's process not started) do not count as runs. Every sample is kept for the
/// report and for <see cref="WaitForAsync"/>.
/// </summary>
public sealed class RunSampler : IAsyncDisposable
{
    private readonly Regex _cgroup;
    private readonly TimeSpan _interval;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly CancellationTokenSource _stop = new();
    private readonly List<RunSample> _samples = [];
    private readonly Task _loop;
    private RunReport? _final;

    private RunSampler(string clusterId, TimeSpan interval)
    {
        _cgroup = new Regex($@":/flotilla-{Regex.Escape(clusterId)}-h(\d+)/([^/\n]+)$", RegexOptions.Multiline | RegexOptions.CultureInvariant);
        _interval = interval;
        _loop = Task.Run(LoopAsync);
    }

    /// <summary>Starts sampling the hosts of cluster <paramref name="cluster"/> (see <see cref="NetnsCluster.StartSampler"/>).</summary>
    public static RunSampler Start(NetnsCluster cluster, TimeSpan interval) => Start(cluster.Id, interval);

    /// <summary>Starts sampling the containers in the cgroups <c>/flotilla-&lt;clusterId&gt;-h&lt;i&gt;/*</c>.</summary>
    public static RunSampler Start(string clusterId, TimeSpan interval) => new(clusterId, interval);

    /// <summary>Time since the sampler started (the clock of every sample's <see cref="RunSample.At"/>): note a fault's moment with it.</summary>
    public TimeSpan Elapsed => _clock.Elapsed;

    /// <summary>The latest sample, or null before the first.</summary>
    public RunSample? Latest
    {
        get
        {
            lock (_samples) return _samples.Count == 0 ? null : _samples[^1];
        }
    }

    /// <summary>Every sample so far, oldest first.</summary>
    public IReadOnlyList<RunSample> Samples
    {
        get
        {
            lock (_samples) return _samples.ToList();
        }
    }

    /// <summary>The first sample taken from now on that satisfies <paramref name="condition"/>; null if none did within <paramref name="timeout"/>.</summary>
    public async Task<RunSample?> WaitForAsync(Func<RunSample, bool> condition, TimeSpan timeout, CancellationToken ct = default)
    {
        var from = Elapsed;
        var deadline = from + timeout;
        var seen = 0;
        while (true)
        {
            List<RunSample> fresh;
            lock (_samples) fresh = _samples.Skip(seen).ToList();
            seen += fresh.Count;
            if (fresh.FirstOrDefault(s => s.At >= from && condition(s)) is { } hit) return hit;
            if (Elapsed > deadline || _loop.IsCompleted) return null;
            await Task.Delay(_interval / 2, ct);
        }
    }

    /// <summary>The report of every sample so far.</summary>
    public RunReport Report()
    {
        List<RunSample> samples;
        lock (_samples) samples = _samples.ToList();
        var overlaps = new List<RunOverlap>();
        var original = new Dictionary<string, int>();
        var elsewhere = new Dictionary<string, RunMove>();
        var longest = TimeSpan.Zero;
        for (var i = 0; i < samples.Count; i++)
        {
            var sample = samples[i];
            if (i > 0 && sample.At - samples[i - 1].At > longest) longest = sample.At - samples[i - 1].At;
            foreach (var (id, hosts) in sample.Hosts)
            {
                if (hosts.Count > 1) overlaps.Add(new RunOverlap(sample.At, id, hosts));
                if (!original.TryGetValue(id, out var first)) original[id] = first = hosts[0];
                if (!elsewhere.ContainsKey(id) && hosts.FirstOrDefault(h => h != first) is var other && other != 0)
                    elsewhere[id] = new RunMove(sample.At, first, other);
            }
        }
        return new RunReport(samples.Count, samples.Count == 0 ? 0 : samples.Max(s => s.MaxRuns), overlaps, original, elsewhere, longest);
    }

    /// <summary>
    /// The first sample at or after <paramref name="since"/> in which every one of <paramref name="ids"/> ran on some host
    /// other than <paramref name="host"/> (whether or not it still ran there too: overlaps are counted apart); null if none.
    /// </summary>
    public RunSample? AllRunningElsewhere(IEnumerable<string> ids, int host, TimeSpan since)
    {
        var wanted = ids.ToList();
        lock (_samples)
            return _samples.FirstOrDefault(s => s.At >= since && wanted.All(id => s.Hosts.TryGetValue(id, out var on) && on.Any(h => h != host)));
    }

    /// <summary>Stops sampling and returns the report of the whole run.</summary>
    public async Task<RunReport> StopAsync()
    {
        if (_final is { } done) return done;
        await _stop.CancelAsync();
        try
        {
            await _loop;
        }
        catch (OperationCanceledException)
        {
        }
        return _final = Report();
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _stop.Dispose();
    }

    private async Task LoopAsync()
    {
        using var timer = new PeriodicTimer(_interval);
        do
        {
            var sample = Take();
            lock (_samples) _samples.Add(sample);
        }
        while (await timer.WaitForNextTickAsync(_stop.Token));
    }

    /// <summary>One scan of /proc.</summary>
    private RunSample Take()
    {
        var at = _clock.Elapsed;
        var runs = new Dictionary<string, List<int>>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            var name = Path.GetFileName(dir.AsSpan());
            if (name.Length == 0 || !char.IsAsciiDigit(name[0])) continue;
            string cgroup;
            try
            {
                cgroup = File.ReadAllText(dir + "/cgroup");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue; // gone meanwhile
            }
            var match = _cgroup.Match(cgroup);
            if (!match.Success || !IsRunningContainerInit(dir)) continue;
            var host = int.Parse(match.Groups[1].ValueSpan, CultureInfo.InvariantCulture);
            var id = match.Groups[2].Value;
            if (!runs.TryGetValue(id, out var hosts)) runs[id] = hosts = [];
            hosts.Add(host);
        }
        return new RunSample(at, runs.ToDictionary(r => r.Key, r => (IReadOnlyList<int>)r.Value.Order().ToList()));
    }

    /// <summary>PID 1 of its own PID namespace, neither a zombie nor stopped, and past <c>runc init</c>.</summary>
    private static bool IsRunningContainerInit(string dir)
    {
        try
        {
            string? state = null, nspid = null, comm = null;
            foreach (var line in File.ReadLines(dir + "/status"))
            {
                if (line.StartsWith("Name:", StringComparison.Ordinal)) comm = line[5..].Trim();
                else if (line.StartsWith("State:", StringComparison.Ordinal)) state = line[6..].Trim();
                else if (line.StartsWith("NSpid:", StringComparison.Ordinal)) nspid = line[6..].Trim();
            }
            if (state is null || nspid is null || comm is null) return false;
            if (state[0] is 'Z' or 'X' or 'T' or 't') return false;
            if (comm.StartsWith("runc:", StringComparison.Ordinal)) return false;
            var ids = nspid.Split('\t', ' ', StringSplitOptions.RemoveEmptyEntries);
            return ids.Length > 1 && ids[^1] == "1";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }
}
