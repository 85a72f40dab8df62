using Akka.Actor;
using Akka.Event;
using Flotilla.Contracts;

namespace Flotilla.Cluster.EventStore;

/// <summary>What an entity needs from its host: the journal, and the name of the node it runs on.</summary>
public sealed record EntityHost(IEventJournal Journal, string NodeName, Containers.IRuntimeDirectory? Runtimes = null);

/// <summary>
/// Base of every event-sourced actor: on start it replays its stream through the pure fold;
/// a command's events are appended with the version last seen, then folded. A version
/// conflict means another incarnation wrote first, so this one stops (the store is the fence).
/// Handlers run with the mailbox suspended (<c>ReceiveAsync</c>), so commands are strictly sequential.
/// </summary>
public abstract class EventSourcedEntity<TState, TEvent> : ReceiveActor where TEvent : class
{
    private readonly CancellationTokenSource _stopping = new();

    protected EventSourcedEntity(EntityHost host, string streamKey, TState initial)
    {
        Host = host;
        StreamKey = streamKey;
        State = initial;
    }

    protected ILoggingAdapter Log { get; } = Context.GetLogger();
    protected EntityHost Host { get; }
    protected string StreamKey { get; }
    protected TState State { get; private set; }
    protected long Version { get; private set; }
    protected CancellationToken Stopping => _stopping.Token;

    /// <summary>The fold: state after one event. Must be pure; recovery uses the same function.</summary>
    protected abstract TState Apply(TState state, TEvent @event);

    protected override void PreStart()
    {
        RunTask(async () =>
        {
            var stream = await Host.Journal.ReadAsync(StreamKey, Stopping);
            foreach (var e in stream.Events)
                if (e is TEvent typed) State = Apply(State, typed);
            Version = stream.Version;
            OnRecovered();
        });
    }

    protected override void PostStop() => _stopping.Cancel();

    /// <summary>Called once the stream has been replayed, before the first command.</summary>
    protected virtual void OnRecovered() { }

    /// <summary>
    /// Appends the events, folds them, and returns true. On a conflict or a store failure the
    /// sender gets a <see cref="CommandRejected"/>, and this incarnation stops so the next one
    /// starts from what the store really holds.
    /// </summary>
    protected async Task<bool> PersistAsync(IReadOnlyList<TEvent> events, RequestOrigin origin)
    {
        var replyTo = Sender;
        try
        {
            Version = await Host.Journal.AppendAsync(StreamKey, Version, events, EventMetadata.From(origin, Host.NodeName), Stopping);
        }
        catch (StreamVersionConflictException ex)
        {
            Log.Warning("{0}: {1}; stopping this incarnation", StreamKey, ex.Message);
            replyTo.Tell(new CommandRejected(RejectionCode.Conflict, ex.Message));
            Context.Stop(Self);
            return false;
        }
        catch (Exception ex)
        {
            // The append may or may not have committed: only a fresh replay can tell.
            Log.Error(ex, "{0}: append failed; stopping to recover from the store", StreamKey);
            replyTo.Tell(new CommandRejected(RejectionCode.Unavailable, $"event store unavailable: {ex.Message}"));
            Context.Stop(Self);
            return false;
        }
        foreach (var e in events) State = Apply(State, e);
        return true;
    }
}
