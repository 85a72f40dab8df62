namespace Flotilla.NodeRuntime.Distribution;

/// <summary>
/// Where pull and push progress goes: one line per call, in the terms of Docker's JSON message stream
/// (<c>status</c>, <c>id</c>, and <c>progressDetail</c> current/total).
/// </summary>
public interface IDistributionProgress
{
    Task ReportAsync(string status, string? id = null, long? current = null, long? total = null);
}

/// <summary>Limits "Downloading"/"Pushing" lines to a few per second per layer; a final one always passes.</summary>
internal sealed class ProgressThrottle(TimeSpan interval)
{
    // The caller reports the start itself: the first read is not worth a line of its own.
    private long _lastTicks = Environment.TickCount64;

    public bool ShouldReport(bool final)
    {
        var now = Environment.TickCount64;
        if (!final && _lastTicks >= 0 && now - _lastTicks < interval.TotalMilliseconds) return false;
        _lastTicks = now;
        return true;
    }
}

/// <summary>One progress line at a time from concurrent transfers.</summary>
internal sealed class SerializedProgress(IDistributionProgress inner) : IDistributionProgress
{
    private readonly SemaphoreSlim _gate = new(1, 1);

    public async Task ReportAsync(string status, string? id = null, long? current = null, long? total = null)
    {
        await _gate.WaitAsync();
        try
        {
            await inner.ReportAsync(status, id, current, total);
        }
        finally
        {
            _gate.Release();
        }
    }
}
