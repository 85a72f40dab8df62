using System.Collections.Concurrent;
using JasperFx;
using JasperFx.Events;
using Marten;
using Npgsql;

namespace Flotilla.Cluster.EventStore;

/// <summary>
/// <see cref="IEventJournal"/> over Marten's event store (string stream keys), with group commit: appends that arrive
/// while a commit is in flight are written together in the next transaction (one per stream at most, up to
/// <see cref="MaxBatch"/> by default), so many entities appending at once share one round trip and one fsync. An append that
/// finds nothing in flight starts a commit at once (no added latency when idle). Every append keeps its own
/// expected-version check, metadata and hash chain; when a grouped transaction fails it is split and retried, so
/// a conflicting stream fails alone while the others commit.
/// </summary>
public sealed class MartenEventJournal : IEventJournal
{
    public const string NodeHeader = "node";
    public const int MaxBatch = 256;

    private readonly IDocumentStore _store;
    private readonly bool _chainHashes;
    private readonly int _maxBatch;

    /// <summary>Streams whose tail this journal wrote last: saves the read of the previous hash on the next append.</summary>
    private readonly ConcurrentDictionary<string, (long Version, string Hash)> _tails = new();
    private const int MaxTails = 50_000;

    private readonly GroupedWork<PendingAppend, long> _commits;
    private readonly GroupedWork<PendingRead, StoredStream> _reads;
    private long _transactions;
    private long _appends;

    /// <summary>Transactions committed and appends they carried: their ratio is the mean group size (benchmarks, diagnostics).</summary>
    public (long Transactions, long Appends) Committed => (Interlocked.Read(ref _transactions), Interlocked.Read(ref _appends));

    private sealed class PendingAppend(string streamKey, long expectedVersion, IReadOnlyList<object> events, EventMetadata metadata)
        : PendingWork<long>
    {
        public string StreamKey { get; } = streamKey;
        public long ExpectedVersion { get; } = expectedVersion;
        public IReadOnlyList<object> Events { get; } = events;
        public EventMetadata Metadata { get; } = metadata;
        /// <summary>The hash of this append's last event once it is staged.</summary>
        public string TailHash { get; set; } = "";
        public long NewVersion => ExpectedVersion + Events.Count;
    }

    private long _readQueries;
    private long _streamsRead;

    /// <summary>Queries that read streams and the streams they read (grouped reads share a query).</summary>
    public (long Queries, long Streams) Read => (Interlocked.Read(ref _readQueries), Interlocked.Read(ref _streamsRead));

    private sealed class PendingRead(string streamKey) : PendingWork<StoredStream>
    {
        public string StreamKey { get; } = streamKey;
    }

    /// <param name="chainHashes">Off only to measure what hash chaining costs (bench/Flotilla.Bench); never in a host.</param>
    /// <param name="maxBatch">Most appends per transaction; 1 only to measure what grouping gains (bench/Flotilla.Bench.Placement).</param>
    public MartenEventJournal(IDocumentStore store, bool chainHashes = true, int maxBatch = MaxBatch)
    {
        _store = store;
        _chainHashes = chainHashes;
        _maxBatch = maxBatch;
        // CommitAsync settles every member itself; GroupedWork's catch only guards against a bug leaving callers hanging.
        _commits = new GroupedWork<PendingAppend, long>(TakeBatch, CommitAsync);
        _reads = new GroupedWork<PendingRead, StoredStream>(
            live => (live.Take(maxBatch).ToList(), live.Skip(maxBatch).ToList()), ReadBatchAsync);
    }

    /// <summary>
    /// Reads one stream. Like appends, reads that arrive while one is in flight are answered together by one query
    /// (entities recovering at once, such as a burst of creates); a read with nothing in flight runs at once.
    /// </summary>
    public Task<StoredStream> ReadAsync(string streamKey, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return _reads.SubmitAsync(new PendingRead(streamKey), cancellationToken);
    }

    public async Task<long> VersionAsync(string streamKey, CancellationToken cancellationToken = default)
    {
        await using var session = _store.QuerySession();
        return (await session.Events.FetchStreamStateAsync(streamKey, cancellationToken))?.Version ?? 0;
    }

    private async Task ReadBatchAsync(IReadOnlyList<PendingRead> batch)
    {
        var streams = await FetchStreamsAsync(batch.Select(r => r.StreamKey).Distinct(StringComparer.Ordinal).ToList());
        foreach (var read in batch) read.Done.TrySetResult(streams[read.StreamKey]);
    }

    private async Task<Dictionary<string, StoredStream>> FetchStreamsAsync(IReadOnlyList<string> keys)
    {
        Interlocked.Increment(ref _readQueries);
        Interlocked.Add(ref _streamsRead, keys.Count);
        await using var session = _store.QuerySession();
        // Not any caller's token: the query is shared; Npgsql's command timeout bounds it.
        if (keys.Count == 1)
        {
            var events = await session.Events.FetchStreamAsync(keys[0], token: CancellationToken.None);
            return new Dictionary<string, StoredStream>(StringComparer.Ordinal) { [keys[0]] = Stored(events) };
        }
        var keyArray = keys.ToArray();
        var all = await session.Events.QueryAllRawEvents().Where(e => keyArray.Contains(e.StreamKey)).ToListAsync(CancellationToken.None);
        var byStream = all.GroupBy(e => e.StreamKey!, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.OrderBy(e => e.Version).ToList(), StringComparer.Ordinal);
        return keys.ToDictionary(k => k, k => byStream.TryGetValue(k, out var events) ? Stored(events) : new StoredStream([], 0), StringComparer.Ordinal);
    }

    private static StoredStream Stored(IReadOnlyList<IEvent> events) =>
        new(events.Select(e => e.Data).ToList(), events.Count == 0 ? 0 : events[^1].Version);

    /// <remarks>
    /// A caller cancelled before its append is taken into a commit gets <see cref="OperationCanceledException"/> and
    /// nothing is written; cancelled during the commit, it gets the same exception but the append may have committed
    /// (as with any cancelled write: only a read can tell). A commit serves many callers, so no caller's token stops it.
    /// </remarks>
    public Task<long> AppendAsync(string streamKey, long expectedVersion, IReadOnlyList<object> events,
        EventMetadata metadata, CancellationToken cancellationToken = default)
    {
        if (events.Count == 0) return Task.FromResult(expectedVersion);
        cancellationToken.ThrowIfCancellationRequested();
        return _commits.SubmitAsync(new PendingAppend(streamKey, expectedVersion, events, metadata), cancellationToken);
    }

    /// <summary>The next batch: the oldest waiting appends, one per stream (a second append to a stream waits for the first).</summary>
    private (List<PendingAppend> Batch, List<PendingAppend> Waiting) TakeBatch(List<PendingAppend> waiting)
    {
        var batch = new List<PendingAppend>(Math.Min(waiting.Count, _maxBatch));
        var streams = new HashSet<string>(StringComparer.Ordinal);
        var rest = new List<PendingAppend>();
        foreach (var append in waiting)
        {
            if (batch.Count < _maxBatch && streams.Add(append.StreamKey)) batch.Add(append);
            else rest.Add(append);
        }
        return (batch, rest);
    }

    /// <summary>Commits the batch in one transaction; if that fails, halves it until each failure is down to its own append.</summary>
    private async Task CommitAsync(IReadOnlyList<PendingAppend> batch)
    {
        try
        {
            await WriteAsync(batch);
        }
        catch (Exception ex) when (batch.Count > 1 && !IsUnavailable(ex))
        {
            var half = batch.Count / 2;
            await CommitAsync(batch.Take(half).ToList());
            await CommitAsync(batch.Skip(half).ToList());
            return;
        }
        catch (Exception ex)
        {
            foreach (var append in batch) Fail(append, ex);
            return;
        }
        Interlocked.Increment(ref _transactions);
        Interlocked.Add(ref _appends, batch.Count);
        foreach (var append in batch)
        {
            if (_chainHashes)
            {
                if (_tails.Count >= MaxTails) _tails.Clear();
                _tails[append.StreamKey] = (append.NewVersion, append.TailHash);
            }
            append.Done.TrySetResult(append.NewVersion);
        }
    }

    private void Fail(PendingAppend append, Exception ex)
    {
        if (IsVersionConflict(ex))
        {
            _tails.TryRemove(append.StreamKey, out _);
            append.Done.TrySetException(new StreamVersionConflictException(append.StreamKey, append.ExpectedVersion, ex));
        }
        else if (UniqueViolation(ex) is { } constraint)
            append.Done.TrySetException(new UniqueValueTakenException(append.StreamKey, constraint, ex));
        else
            append.Done.TrySetException(ex);
    }

    private async Task WriteAsync(IReadOnlyList<PendingAppend> batch)
    {
        await using var session = _store.LightweightSession();
        var serializer = _store.Options.Serializer();
        foreach (var append in batch)
        {
            var metadata = append.Metadata;
            // Each event chains to the one before it in its stream (see EventHashChain).
            var previous = append.ExpectedVersion == 0 ? ""
                : _tails.TryGetValue(append.StreamKey, out var tail) && tail.Version == append.ExpectedVersion ? tail.Hash
                : _chainHashes ? await PreviousHashAsync(session, append.StreamKey, append.ExpectedVersion) : "";
            var staged = new object[append.Events.Count];
            for (var i = 0; i < staged.Length; i++)
            {
                // Metadata per event, not per session: one session carries appends of many callers.
                var e = session.Events.BuildEvent(append.Events[i]);
                e.UserName = metadata.User;
                e.CorrelationId = metadata.CorrelationId;
                e.CausationId = metadata.CausationId;
                e.SetHeader(NodeHeader, metadata.Node);
                if (_chainHashes)
                {
                    // The hash covers the row as it will be stored, so its timestamp is fixed here (Marten keeps one
                    // that is set) at the microseconds PostgreSQL keeps, and the body is hashed as Marten serializes it.
                    e.Timestamp = EventHashChain.ToStoredPrecision(DateTimeOffset.UtcNow);
                    var row = new StoredEventRow(append.StreamKey, append.ExpectedVersion + i + 1, e.EventTypeName, e.Timestamp,
                        metadata.User, metadata.CorrelationId, metadata.CausationId, serializer.ToJson(e.Headers), serializer.ToJson(append.Events[i]));
                    previous = EventHashChain.Compute(previous, row);
                    e.SetHeader(EventHashChain.Header, previous);
                }
                staged[i] = e;
            }
            append.TailHash = previous;
            if (append.ExpectedVersion == 0)
                session.Events.StartStream(append.StreamKey, staged);
            else
                // Marten's Append takes the version the stream will have *after* this append.
                session.Events.Append(append.StreamKey, append.NewVersion, staged);
        }
        // Not any caller's token: the commit is shared; Npgsql's command timeout bounds it.
        await session.SaveChangesAsync(CancellationToken.None);
    }

    /// <summary>The hash of the stream's event at <paramref name="version"/>; "" when it has none (written before chaining).</summary>
    private static async Task<string> PreviousHashAsync(IQuerySession session, string streamKey, long version)
    {
        var last = await session.Events.QueryAllRawEvents()
            .Where(e => e.StreamKey == streamKey && e.Version == version)
            .FirstOrDefaultAsync();
        return last?.Headers is { } headers && headers.TryGetValue(EventHashChain.Header, out var hash) ? hash?.ToString() ?? "" : "";
    }

    private static bool IsVersionConflict(Exception ex) => ex switch
    {
        EventStreamUnexpectedMaxEventIdException => true,
        ConcurrencyException => true,
        Marten.Exceptions.ExistingStreamIdCollisionException => true,
        PostgresException { SqlState: PostgresErrorCodes.UniqueViolation } p when IsEventTable(p.TableName) => true,
        _ when ex.InnerException is not null => IsVersionConflict(ex.InnerException),
        _ => false,
    };

    private static bool IsEventTable(string? table) => table is "mt_streams" or "mt_events";

    /// <summary>The unique index a read model's row would have broken (a stream's own key is a version conflict instead).</summary>
    private static string? UniqueViolation(Exception ex) => ex switch
    {
        PostgresException { SqlState: PostgresErrorCodes.UniqueViolation } p when !IsEventTable(p.TableName) => p.ConstraintName ?? "unique index",
        _ when ex.InnerException is not null => UniqueViolation(ex.InnerException),
        _ => null,
    };

    /// <summary>
    /// The database could not be reached (not an answer about one append): every member of the batch would fail the
    /// same way, so splitting it would only multiply the wait.
    /// </summary>
    private static bool IsUnavailable(Exception ex) => ex switch
    {
        PostgresException => false,
        NpgsqlException or TimeoutException or System.Net.Sockets.SocketException => true,
        _ when ex.InnerException is not null => IsUnavailable(ex.InnerException),
        _ => false,
    };
}
