using System.Security.Cryptography;
using System.Text;
using Flotilla.Cluster.EventStore;
using JasperFx.Events;
using Marten;
using Npgsql;

namespace Flotilla.Cluster.Audit;

/// <summary>
/// A checkpoint of the global event sequence: the hash of every event hash in (<see cref="FromSequence"/>,
/// <see cref="ToSequence"/>], chained to the previous checkpoint. It catches what a stream's own chain cannot:
/// the newest event of a stream deleted, or a whole stream removed.
/// </summary>
public sealed class AuditCheckpoint
{
    /// <summary>The checkpoint's number, 1, 2, …</summary>
    public int Id { get; set; }
    public long FromSequence { get; set; }
    public long ToSequence { get; set; }
    public int Count { get; set; }
    public string Hash { get; set; } = "";
    public string PreviousHash { get; set; } = "";
    public DateTimeOffset At { get; set; }

    /// <summary>The <see cref="AuditCheckpointKey"/> that signed it; empty on checkpoints from before signing.</summary>
    public string KeyId { get; set; } = "";

    /// <summary>Base64 ECDSA P-256 signature over the fields above but <see cref="At"/>.</summary>
    public string Signature { get; set; } = "";
}

/// <summary>What <c>audit verify</c> found wrong, in the words an operator needs.</summary>
public sealed record AuditProblem(string Kind, string Stream, long? Version, long? Sequence, string Detail);

public sealed record AuditVerification(long Events, int Streams, int Checkpoints, long UnchainedEvents, IReadOnlyList<AuditProblem> Problems)
{
    /// <summary>
    /// Events whose hash is format 1 (written before format 2, see <see cref="EventHashChain"/>): for them a field added
    /// to the body that their record does not have, and the timestamp and type columns, are not covered.
    /// </summary>
    public long Format1Events { get; init; }

    /// <summary>Whether checkpoint signatures were checked: only a verifier holding the gateways' key can.</summary>
    public bool SignaturesChecked { get; init; }

    /// <summary>Unsigned checkpoints accepted as older than signing (before the first this key signed, or it has signed none).</summary>
    public int UnsignedCheckpoints { get; init; }

    public bool Intact => Problems.Count == 0;
}

/// <summary>Tamper evidence over the event store: writes checkpoints, verifies chains and checkpoints.</summary>
/// <param name="key">The gateways' checkpoint key: signs new checkpoints and checks them; null on a process without it (a node).</param>
public sealed class AuditLedger(IDocumentStore store, AuditCheckpointKey? key = null)
{
    /// <summary>
    /// Events younger than this are left to the next checkpoint: a transaction may still commit an event with a
    /// lower sequence number than one already visible.
    /// </summary>
    public static readonly TimeSpan SettleTime = TimeSpan.FromSeconds(5);

    private const int Page = 5_000;

    /// <summary>Checkpoints every settled event not yet covered; null when there was none.</summary>
    public async Task<AuditCheckpoint?> CheckpointAsync(DateTimeOffset now, CancellationToken cancellationToken = default)
    {
        await using var session = store.LightweightSession();
        var last = await session.Query<AuditCheckpoint>().OrderByDescending(c => c.Id).FirstOrDefaultAsync(cancellationToken);
        var from = last?.ToSequence ?? 0;
        var settled = now - SettleTime;
        var events = await session.Events.QueryAllRawEvents()
            .Where(e => e.Sequence > from && e.Timestamp <= settled)
            .OrderBy(e => e.Sequence)
            .ToListAsync(cancellationToken);
        if (events.Count == 0) return null;
        var checkpoint = new AuditCheckpoint
        {
            Id = (last?.Id ?? 0) + 1,
            FromSequence = from,
            ToSequence = events[^1].Sequence,
            Count = events.Count,
            PreviousHash = last?.Hash ?? "",
            At = now,
        };
        checkpoint.Hash = RangeHash(checkpoint.PreviousHash, events.Select(e => (e.Sequence, StoredHash(e) ?? "-")));
        key?.Sign(checkpoint);
        // Id collision (another writer checkpointed first) fails the insert: checkpoints never fork.
        session.Insert(checkpoint);
        await session.SaveChangesAsync(cancellationToken);
        key?.Stored(checkpoint);
        return checkpoint;
    }

    public async Task<AuditVerification> VerifyAsync(CancellationToken cancellationToken = default)
    {
        var problems = new List<AuditProblem>();
        var streams = new Dictionary<string, (long Version, string Hash, bool Chained)>();
        // In sequence order (pages are read by sequence), so each checkpoint's range is one forward walk.
        var hashes = new List<(long Sequence, string Hash)>();
        long count = 0, unchained = 0, format1 = 0;
        await using var session = store.QuerySession();
        await using var connection = store.Storage.Database.CreateConnection();
        await connection.OpenAsync(cancellationToken);

        long after = 0;
        while (true)
        {
            // The rows as stored (the body as jsonb's text), not as read back into their records: a field the record
            // does not have would be dropped on the way.
            var page = await ReadRowsAsync(connection, after, cancellationToken);
            if (page.Count == 0) break;
            var format1Bodies = await Format1BodiesAsync(session, page, cancellationToken);
            foreach (var e in page)
            {
                count++;
                var key = e.Row.StreamKey;
                var (lastVersion, lastHash, chained) = streams.GetValueOrDefault(key, (0, "", false));
                var stored = e.Hash;
                hashes.Add((e.Sequence, stored ?? "-"));
                if (stored is null)
                {
                    // Events from before chaining began are accepted only ahead of every chained event of their stream.
                    if (chained) problems.Add(new("inserted", key, e.Row.Version, e.Sequence, "an event without a hash after chained events: written outside Flotilla"));
                    else unchained++;
                    streams[key] = (e.Row.Version, "", chained);
                    continue;
                }
                if (e.Row.Version != lastVersion + 1)
                {
                    problems.Add(new("deleted", key, lastVersion + 1, null,
                        $"versions {lastVersion + 1}..{e.Row.Version - 1} of the stream are missing"));
                }
                else if (EventHashChain.IsFormat2(stored))
                {
                    if (EventHashChain.Compute(lastHash, e.Row) != stored)
                        problems.Add(new("edited", key, e.Row.Version, e.Sequence,
                            $"{e.Row.EventType} does not match its hash: its body or metadata changed after it was written"));
                }
                else
                {
                    format1++;
                    // Format 1 after format 2 in one stream: Flotilla never writes that, a hand could (to hide an edit).
                    var expected = EventHashChain.IsFormat2(lastHash) || !format1Bodies.TryGetValue(e.Sequence, out var data) ? null
                        : EventHashChain.ComputeFormat1(lastHash, key, e.Row.Version, data, e.Format1Metadata);
                    if (expected != stored)
                        problems.Add(new("edited", key, e.Row.Version, e.Sequence,
                            $"{e.Row.EventType} does not match its hash: its body or metadata changed after it was written"));
                }
                // Chain on from what was stored, so one edit is reported once, not for every later event.
                streams[key] = (e.Row.Version, stored, true);
            }
            after = page[^1].Sequence;
        }

        // The newest events of a stream leave no gap when deleted: compare with the stream's recorded version.
        foreach (var (key, seen) in streams)
        {
            var state = await session.Events.FetchStreamStateAsync(key, cancellationToken);
            if (state is not null && state.Version > seen.Version)
                problems.Add(new("deleted", key, seen.Version + 1, null,
                    $"the stream is at version {state.Version} but its events end at {seen.Version}"));
        }

        var checkpoints = await session.Query<AuditCheckpoint>().OrderBy(c => c.Id).ToListAsync(cancellationToken);
        var previous = "";
        var next = 0;
        foreach (var checkpoint in checkpoints)
        {
            while (next < hashes.Count && hashes[next].Sequence <= checkpoint.FromSequence) next++;
            var first = next;
            while (next < hashes.Count && hashes[next].Sequence <= checkpoint.ToSequence) next++;
            var range = hashes.GetRange(first, next - first);
            if (checkpoint.PreviousHash != previous)
                problems.Add(new("checkpoint", "", null, checkpoint.ToSequence, $"checkpoint {checkpoint.Id} does not chain to checkpoint {checkpoint.Id - 1}"));
            else if (range.Count != checkpoint.Count)
                problems.Add(new("checkpoint", "", null, checkpoint.ToSequence,
                    $"checkpoint {checkpoint.Id} covered {checkpoint.Count} events in sequence {checkpoint.FromSequence + 1}..{checkpoint.ToSequence}; " +
                    $"{range.Count} are there now ({(range.Count < checkpoint.Count ? "deleted" : "inserted")} rows)"));
            else if (RangeHash(previous, range) != checkpoint.Hash)
                problems.Add(new("checkpoint", "", null, checkpoint.ToSequence,
                    $"events in sequence {checkpoint.FromSequence + 1}..{checkpoint.ToSequence} differ from when checkpoint {checkpoint.Id} was taken"));
            previous = checkpoint.Hash;
        }
        var unsigned = key is null ? 0 : VerifySignatures(key, checkpoints, problems);

        return new AuditVerification(count, streams.Count, checkpoints.Count, unchained, problems)
        {
            Format1Events = format1,
            SignaturesChecked = key is not null,
            UnsignedCheckpoints = unsigned,
        };
    }

    /// <summary>
    /// A chain and checkpoints recomputed by someone who can write the tables still hash consistently: only a signature
    /// by a key outside the database tells the gateways' checkpoints from theirs. Returns the unsigned checkpoints accepted.
    /// </summary>
    private static int VerifySignatures(AuditCheckpointKey key, IReadOnlyList<AuditCheckpoint> checkpoints, List<AuditProblem> problems)
    {
        var since = key.Since;
        var unsigned = 0;
        foreach (var checkpoint in checkpoints)
        {
            if (string.IsNullOrEmpty(checkpoint.Signature))
            {
                if (since is { } first && checkpoint.Id >= first)
                    problems.Add(new("signature", "", null, checkpoint.ToSequence,
                        $"checkpoint {checkpoint.Id} is not signed, but this gateway signs checkpoints from {first} on: it was made outside the gateways"));
                else unsigned++;
            }
            else if (checkpoint.KeyId != key.KeyId)
                problems.Add(new("signature", "", null, checkpoint.ToSequence,
                    $"checkpoint {checkpoint.Id} is signed by key {checkpoint.KeyId}, not by this gateway's key {key.KeyId}"));
            else if (!key.Verifies(checkpoint))
                problems.Add(new("signature", "", null, checkpoint.ToSequence,
                    $"checkpoint {checkpoint.Id}'s signature does not match it: it was changed after the gateway signed it"));
        }
        if (since is { } signedFrom && (checkpoints.Count == 0 || checkpoints[^1].Id < signedFrom))
            problems.Add(new("signature", "", null, null,
                $"this gateway signed checkpoint {signedFrom}, and it is gone: checkpoints were deleted"));
        return unsigned;
    }

    private static string? StoredHash(IEvent e) =>
        e.Headers is { } headers && headers.TryGetValue(EventHashChain.Header, out var value) && value?.ToString() is { Length: > 0 } hash
            ? hash : null;

    private sealed record StoredRow(long Sequence, StoredEventRow Row, string? Hash, EventMetadata Format1Metadata);

    private async Task<List<StoredRow>> ReadRowsAsync(NpgsqlConnection connection, long after, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            "SELECT seq_id, stream_id, version, type, timestamp, user_name, correlation_id, causation_id, headers::text, " +
            $"headers ->> '{EventHashChain.Header}', headers ->> '{MartenEventJournal.NodeHeader}', data::text " +
            $"FROM {store.Options.Events.DatabaseSchemaName}.mt_events WHERE seq_id > @after ORDER BY seq_id LIMIT {Page}", connection);
        command.Parameters.AddWithValue("after", after);
        var rows = new List<StoredRow>(Page);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            string? Text(int i) => reader.IsDBNull(i) ? null : reader.GetString(i);
            var user = Text(5) ?? "";
            var correlation = Text(6) ?? "";
            var causation = Text(7);
            var row = new StoredEventRow(reader.GetString(1), reader.GetInt64(2), reader.GetString(3),
                reader.GetFieldValue<DateTimeOffset>(4), user, correlation, causation, Text(8), reader.GetString(11));
            rows.Add(new(reader.GetInt64(0), row, Text(9) is { Length: > 0 } hash ? hash : null,
                new EventMetadata(user, Text(10) ?? "", correlation, causation)));
        }
        return rows;
    }

    /// <summary>The bodies of the page's format-1 events read back into their records: what format 1 hashed.</summary>
    private static async Task<Dictionary<long, object>> Format1BodiesAsync(IQuerySession session, List<StoredRow> page, CancellationToken cancellationToken)
    {
        var sequences = page.Where(r => r.Hash is { } h && !EventHashChain.IsFormat2(h)).Select(r => r.Sequence).ToArray();
        if (sequences.Length == 0) return [];
        try
        {
            var events = await session.Events.QueryAllRawEvents().Where(e => sequences.Contains(e.Sequence)).ToListAsync(cancellationToken);
            return events.ToDictionary(e => e.Sequence, e => e.Data);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // A body edited into something its record cannot hold: read one by one, and leave that one out (an edit).
            var bodies = new Dictionary<long, object>();
            foreach (var sequence in sequences)
            {
                try
                {
                    if (await session.Events.QueryAllRawEvents().Where(e => e.Sequence == sequence).FirstOrDefaultAsync(cancellationToken) is { } e)
                        bodies[sequence] = e.Data;
                }
                catch (Exception) when (!cancellationToken.IsCancellationRequested)
                {
                }
            }
            return bodies;
        }
    }

    private static string RangeHash(string previous, IEnumerable<(long Sequence, string Hash)> events)
    {
        var builder = new StringBuilder(previous).Append('\n');
        foreach (var (sequence, hash) in events) builder.Append(sequence).Append(':').Append(hash).Append('\n');
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(builder.ToString())));
    }
}
