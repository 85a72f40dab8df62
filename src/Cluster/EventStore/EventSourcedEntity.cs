using Akka.Actor;
using Akka.Event;
using Flotilla.Contracts;

namespace Flotilla.Cluster.EventStore;

/// <summary>What an entity needs from its host: the journal, and the name of the node it runs on.</summary>
public sealed record EntityHost(IEventJournal Journal, string NodeName, Containers.IRuntimeDirectory? Runtimes = null)
{
    /// <summary>How long the container entities wait for their node's runtime.</summary>
    public Containers.CommandTimeouts Timeouts { get; init; } = Containers.CommandTimeouts.Default;
}

/// <summary>
/// Base of every event-sourced actor: before its first command it replays its stream through the pure fold;
/// a command's events are appended with the version last seen, then folded. A version
/// conflict means another incarnation wrote first, so this one stops (the store is the fence).
/// Handlers run with the mailbox suspended (<c>ReceiveAsync</c>), so commands are strictly sequential.
/// A first command that only makes sense on a new stream (<see cref="StartsNewStream"/>) skips the replay: its
/// append expects version 0, so a stream that exists after all fails it as a conflict.
/// </summary>
public abstract class EventSourcedEntity<TState, TEvent> : ReceiveActor, IWithUnboundedStash where TEvent : class
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
    public IStash Stash { get; set; } = null!;

    /// <summary>The fold: state after one event. Must be pure; recovery uses the same function.</summary>
    protected abstract TState Apply(TState state, TEvent @event);

    // The recovery waits for the first message (sharding starts an entity with one), so a create can skip it.
    protected override void PreStart() => BecomeStacked(() => ReceiveAsync<object>(RecoverForFirstMessageAsync));

    private async Task RecoverForFirstMessageAsync(object first)
    {
        Stash.Stash();
        if (!StartsNewStream(first))
        {
            var stream = await Host.Journal.ReadAsync(StreamKey, Stopping);
            foreach (var e in stream.Events)
                if (e is TEvent typed) State = Apply(State, typed);
            Version = stream.Version;
        }
        UnbecomeStacked();
        OnRecovered();
        Stash.UnstashAll();
    }

    protected override void PostStop() => _stopping.Cancel();

    /// <summary>
    /// True for a command that creates the stream (a new random id): the entity then starts from the initial state at
    /// version 0 without reading the store, a read that would find nothing — the append is the check.
    /// </summary>
    protected virtual bool StartsNewStream(object message) => false;

    /// <summary>Called once the stream has been replayed (or is known to be new), before the first command.</summary>
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
        catch (UniqueValueTakenException ex)
        {
            // Nothing was written: this incarnation's state is still the store's, so it carries on.
            replyTo.Tell(new CommandRejected(RejectionCode.Conflict, ex.Message));
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
