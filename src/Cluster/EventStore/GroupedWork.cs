namespace Flotilla.Cluster.EventStore;

/// <summary>A caller's piece of grouped work and how it ends.</summary>
internal abstract class PendingWork<TResult>
{
    /// <summary>Continuations run on the pool, never inline on the loop.</summary>
    public TaskCompletionSource<TResult> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}

/// <summary>
/// The journal's grouping (group commit, grouped reads): items that arrive while a batch is in flight wait and go
/// together in the next one; an item with nothing in flight starts a batch at once, so an idle journal adds no latency.
/// The loop runs on the pool, never inline on a caller (an actor's task scheduler must not carry it). A caller's
/// cancellation settles only its own item; a batch serves many callers, so no caller's token stops it.
/// </summary>
/// <param name="split">The next batch out of the live waiting items (in arrival order), and the rest, which keep waiting.</param>
/// <param name="run">Runs a batch and settles its items; an exception it lets out fails every item still unsettled.</param>
internal sealed class GroupedWork<TItem, TResult>(
    Func<List<TItem>, (List<TItem> Batch, List<TItem> Waiting)> split,
    Func<IReadOnlyList<TItem>, Task> run) where TItem : PendingWork<TResult>
{
    private readonly Lock _gate = new();
    private List<TItem> _waiting = [];
    private bool _running;

    public async Task<TResult> SubmitAsync(TItem item, CancellationToken cancellationToken)
    {
        bool start;
        lock (_gate)
        {
            _waiting.Add(item);
            start = !_running;
            _running = true;
        }
        if (start) _ = Task.Run(LoopAsync, CancellationToken.None);

        await using var registration = cancellationToken.Register(() => item.Done.TrySetCanceled(cancellationToken));
        return await item.Done.Task;
    }

    private async Task LoopAsync()
    {
        while (true)
        {
            List<TItem> batch;
            lock (_gate)
            {
                // One pass: an item cancelled meanwhile (its callback runs outside this lock) must not shift the split.
                (batch, _waiting) = split(_waiting.Where(i => !i.Done.Task.IsCompleted).ToList());
                if (batch.Count == 0)
                {
                    _running = false;
                    return;
                }
            }
            try
            {
                await run(batch);
            }
            catch (Exception ex)
            {
                foreach (var item in batch) item.Done.TrySetException(ex);
            }
        }
    }
}
