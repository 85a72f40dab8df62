using System.Collections.Concurrent;
using JasperFx;
using JasperFx.Events;
using Marten;

namespace Flotilla.Cluster.EventStore;

/// <summary><see cref="IEventJournal"/> over Marten's event store (string stream keys).</summary>
/// <param name="chainHashes">Off only to measure what hash chaining costs (bench/Flotilla.Bench); never in a host.</param>
public sealed class MartenEventJournal(IDocumentStore store, bool chainHashes = true) : IEventJournal
{
    public const string NodeHeader = "node";

    /// <summary>Streams whose tail this journal wrote last: saves the read of the previous hash on the next append.</summary>
    private readonly ConcurrentDictionary<string, (long Version, string Hash)> _tails = new();
    private const int MaxTails = 50_000;

    public async Task<StoredStream> ReadAsync(string streamKey, CancellationToken cancellationToken = default)
    {
        await using var session = store.QuerySession();
        var events = await session.Events.FetchStreamAsync(streamKey, token: cancellationToken);
        var version = events.Count == 0 ? 0 : events[^1].Version;
        return new StoredStream(events.Select(e => e.Data).ToList(), version);
    }

    public async Task<long> AppendAsync(string streamKey, long expectedVersion, IReadOnlyList<object> events,
        EventMetadata metadata, CancellationToken cancellationToken = default)
    {
        if (events.Count == 0) return expectedVersion;
        await using var session = store.LightweightSession();
        session.CorrelationId = metadata.CorrelationId;
        session.CausationId = metadata.CausationId;
        session.LastModifiedBy = metadata.User;
        session.SetHeader(NodeHeader, metadata.Node);

        // Each event chains to the one before it in its stream (see EventHashChain).
        var previous = expectedVersion == 0 ? ""
            : _tails.TryGetValue(streamKey, out var tail) && tail.Version == expectedVersion ? tail.Hash
            : chainHashes ? await PreviousHashAsync(session, streamKey, expectedVersion, cancellationToken) : "";
        var chained = new object[events.Count];
        for (var i = 0; i < events.Count; i++)
        {
            if (!chainHashes)
            {
                chained[i] = events[i];
                continue;
            }
            var hash = EventHashChain.Compute(previous, streamKey, expectedVersion + i + 1, events[i], metadata);
            var e = session.Events.BuildEvent(events[i]);
            e.SetHeader(EventHashChain.Header, hash);
            chained[i] = e;
            previous = hash;
        }

        if (expectedVersion == 0)
            session.Events.StartStream(streamKey, chained);
        else
            // Marten's Append takes the version the stream will have *after* this append.
            session.Events.Append(streamKey, expectedVersion + events.Count, chained);

        try
        {
            await session.SaveChangesAsync(cancellationToken);
        }
        catch (Exception ex) when (IsVersionConflict(ex))
        {
            _tails.TryRemove(streamKey, out _);
            throw new StreamVersionConflictException(streamKey, expectedVersion, ex);
        }
        if (chainHashes)
        {
            if (_tails.Count >= MaxTails) _tails.Clear();
            _tails[streamKey] = (expectedVersion + events.Count, previous);
        }
        return expectedVersion + events.Count;
    }

    /// <summary>The hash of the stream's event at <paramref name="version"/>; "" when it has none (written before chaining).</summary>
    private static async Task<string> PreviousHashAsync(IQuerySession session, string streamKey, long version, CancellationToken cancellationToken)
    {
        var last = await session.Events.QueryAllRawEvents()
            .Where(e => e.StreamKey == streamKey && e.Version == version)
            .FirstOrDefaultAsync(cancellationToken);
        return last?.Headers is { } headers && headers.TryGetValue(EventHashChain.Header, out var hash) ? hash?.ToString() ?? "" : "";
    }

    private static bool IsVersionConflict(Exception ex) => ex switch
    {
        EventStreamUnexpectedMaxEventIdException => true,
        ConcurrencyException => true,
        Marten.Exceptions.ExistingStreamIdCollisionException => true,
        _ when ex.InnerException is not null => IsVersionConflict(ex.InnerException),
        _ => false,
    };
}
