using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Flotilla.Contracts;
using Marten;
using Npgsql;
using NpgsqlTypes;

namespace Flotilla.Cluster.Audit;

/// <summary>
/// Questions to the event store as an audit trail: plain SQL over Marten's <c>mt_events</c>, because the
/// <c>node</c> header lives in jsonb and Marten's raw-event LINQ cannot filter on it. Read-only; the
/// indexes it relies on are made by <see cref="EnsureIndexesAsync"/>.
/// </summary>
public sealed class AuditQuery(IDocumentStore store)
{
    public const int MaxLimit = 1000;

    /// <summary>Index names Marten's migrations must leave alone (see FlotillaStore.Configure).</summary>
    public static readonly IReadOnlyList<string> IndexNames =
        ["ix_audit_stream_seq", "ix_audit_correlation_seq", "ix_audit_causation_seq", "ix_audit_user_seq", "ix_audit_node_seq", "ix_audit_timestamp"];

    /// <summary>An arbitrary advisory lock key ("audit-ix") taken while the indexes are made.</summary>
    private const long IndexLockKey = 0x61756469742D6978;

    private string Events => $"{store.Options.Events.DatabaseSchemaName}.mt_events";
    private string Streams => $"{store.Options.Events.DatabaseSchemaName}.mt_streams";

    /// <summary>Creates the audit indexes if missing (idempotent; takes a while once on a large store).</summary>
    public async Task EnsureIndexesAsync(CancellationToken cancellationToken = default)
    {
        await store.Storage.Database.EnsureStorageExistsAsync(typeof(JasperFx.Events.IEvent), cancellationToken);
        await using var connection = await OpenAsync(cancellationToken);
        string[] statements =
        [
            $"CREATE INDEX IF NOT EXISTS ix_audit_stream_seq ON {Events} (stream_id, seq_id)",
            $"CREATE INDEX IF NOT EXISTS ix_audit_correlation_seq ON {Events} (correlation_id, seq_id)",
            $"CREATE INDEX IF NOT EXISTS ix_audit_causation_seq ON {Events} (causation_id, seq_id)",
            $"CREATE INDEX IF NOT EXISTS ix_audit_user_seq ON {Events} (user_name, seq_id)",
            $"CREATE INDEX IF NOT EXISTS ix_audit_node_seq ON {Events} ((headers ->> 'node'), seq_id)",
            $"CREATE INDEX IF NOT EXISTS ix_audit_timestamp ON {Events} (timestamp)",
        ];
        // Nodes starting together would race on CREATE INDEX IF NOT EXISTS (a duplicate pg_class row): one at a time.
        await using (var take = new NpgsqlCommand($"SELECT pg_advisory_lock({IndexLockKey})", connection))
            await take.ExecuteNonQueryAsync(cancellationToken);
        try
        {
            foreach (var sql in statements)
            {
                await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 600 };
                await command.ExecuteNonQueryAsync(cancellationToken);
            }
        }
        finally
        {
            await using var release = new NpgsqlCommand($"SELECT pg_advisory_unlock({IndexLockKey})", connection);
            await release.ExecuteNonQueryAsync(CancellationToken.None);
        }
    }

    public async Task<AuditPage> QueryAsync(AuditFilter filter, CancellationToken cancellationToken = default)
    {
        var limit = Math.Clamp(filter.Limit, 1, MaxLimit);
        var sql = new StringBuilder(
            $"SELECT seq_id, timestamp, stream_id, version, type, user_name, headers ->> 'node', correlation_id, causation_id, data::text FROM {Events} WHERE true");
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand { Connection = connection };
        void Where(string condition, object value, NpgsqlDbType? type = null)
        {
            var name = "p" + command.Parameters.Count;
            sql.Append(" AND ").Append(condition.Replace("@", "@" + name));
            var parameter = new NpgsqlParameter(name, value);
            if (type is { } t) parameter.NpgsqlDbType = t;
            command.Parameters.Add(parameter);
        }

        if (filter.After > 0) Where("seq_id > @", filter.After);
        if (filter.Before is { } before) Where("seq_id < @", before);
        if (filter.UpTo is { } upTo) Where("seq_id <= @", upTo);
        // One stream by equality, so the planner always takes the (stream_id, seq_id) index.
        if (filter.Streams.Count == 1) Where("stream_id = @", filter.Streams[0]);
        else if (filter.Streams.Count > 1) Where("stream_id = ANY(@)", filter.Streams.ToArray(), NpgsqlDbType.Array | NpgsqlDbType.Text);
        if (filter.StreamPatterns.Count > 0) Where("stream_id LIKE ANY(@)", filter.StreamPatterns.ToArray(), NpgsqlDbType.Array | NpgsqlDbType.Text);
        if (filter.User is { } user) Where("user_name = @", user);
        if (filter.Types.Count == 1) Where("type = @", filter.Types[0]);
        else if (filter.Types.Count > 1) Where("type = ANY(@)", filter.Types.ToArray(), NpgsqlDbType.Array | NpgsqlDbType.Text);
        if (filter.Node is { } node) Where("headers ->> 'node' = @", node);
        if (filter.CorrelationId is { } correlation) Where("correlation_id = @", correlation);
        if (filter.CausationId is { } causation) Where("causation_id = @", causation);
        if (filter.Since is { } since) Where("timestamp >= @", since.ToUniversalTime(), NpgsqlDbType.TimestampTz);
        if (filter.Until is { } until) Where("timestamp <= @", until.ToUniversalTime(), NpgsqlDbType.TimestampTz);
        sql.Append(filter.Descending ? " ORDER BY seq_id DESC" : " ORDER BY seq_id").Append(" LIMIT ").Append(limit + 1);
        command.CommandText = sql.ToString();

        var entries = new List<AuditEntry>(Math.Min(limit + 1, 256));
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
                entries.Add(new AuditEntry(
                    reader.GetInt64(0),
                    reader.GetFieldValue<DateTimeOffset>(1),
                    reader.GetString(2),
                    reader.GetInt64(3),
                    reader.GetString(4),
                    reader.IsDBNull(5) ? null : reader.GetString(5),
                    reader.IsDBNull(6) ? null : reader.GetString(6),
                    reader.IsDBNull(7) ? null : reader.GetString(7),
                    reader.IsDBNull(8) ? null : reader.GetString(8),
                    Redact(reader.GetString(9))));
        }
        if (entries.Count <= limit) return new AuditPage(entries, null);
        entries.RemoveAt(entries.Count - 1);
        return new AuditPage(entries, entries[^1].Sequence);
    }

    /// <summary>Every matching entry, page after page (for exports and replays of a time range).</summary>
    public async IAsyncEnumerable<AuditEntry> ReadAllAsync(AuditFilter filter, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var page = filter with { Limit = MaxLimit, Descending = false };
        while (true)
        {
            var result = await QueryAsync(page, cancellationToken);
            foreach (var entry in result.Entries) yield return entry;
            if (result.NextCursor is not { } next) yield break;
            page = page with { After = next };
        }
    }

    /// <summary>
    /// The matching entries after <paramref name="after"/>, then new ones as they are stored (polled).
    /// Sequence numbers are taken before commit, so a later number can become visible first: the follow
    /// only moves past a missing number once it has stayed missing for <see cref="GapPatience"/>
    /// (a rolled-back append leaves such a hole for good).
    /// </summary>
    public async IAsyncEnumerable<AuditEntry> FollowAsync(AuditFilter filter, long after, TimeSpan pollInterval,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var cursor = after;
        var gapSince = (DateTimeOffset?)null;
        while (!cancellationToken.IsCancellationRequested)
        {
            var (complete, gap) = await CompleteUpToAsync(cursor, cancellationToken);
            if (gap)
            {
                gapSince ??= DateTimeOffset.UtcNow;
                if (DateTimeOffset.UtcNow - gapSince < GapPatience)
                {
                    // Deliver what is known complete; wait for the hole to fill.
                }
                else
                {
                    complete = await MaxSequenceAsync(cancellationToken);
                    gapSince = null;
                }
            }
            else gapSince = null;

            if (complete > cursor)
            {
                await foreach (var entry in ReadAllAsync(filter with { After = cursor, UpTo = complete }, cancellationToken))
                    yield return entry;
                cursor = complete;
                continue;
            }
            try
            {
                await Task.Delay(pollInterval, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                yield break;
            }
        }
    }

    public static readonly TimeSpan GapPatience = TimeSpan.FromSeconds(3);

    /// <summary>The highest sequence up to which every number after <paramref name="after"/> is stored, and whether a hole follows it.</summary>
    private async Task<(long Complete, bool Gap)> CompleteUpToAsync(long after, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand($"SELECT seq_id FROM {Events} WHERE seq_id > @after ORDER BY seq_id LIMIT 5000", connection);
        command.Parameters.AddWithValue("after", after);
        var complete = after;
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var seq = reader.GetInt64(0);
            if (seq != complete + 1) return (complete, true);
            complete = seq;
        }
        return (complete, false);
    }

    /// <summary>The newest sequence number stored (0 when empty): where a live follow starts.</summary>
    public async Task<long> MaxSequenceAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand($"SELECT coalesce(max(seq_id), 0) FROM {Events}", connection);
        return Convert.ToInt64(await command.ExecuteScalarAsync(cancellationToken));
    }

    /// <summary>Stream keys starting with <paramref name="prefix"/> (at most <paramref name="max"/>), removed objects included.</summary>
    public async Task<IReadOnlyList<string>> StreamsStartingWithAsync(string prefix, int max, CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand($"SELECT id FROM {Streams} WHERE starts_with(id, @prefix) ORDER BY id LIMIT @max", connection);
        command.Parameters.AddWithValue("prefix", prefix);
        command.Parameters.AddWithValue("max", max);
        var keys = new List<string>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken)) keys.Add(reader.GetString(0));
        return keys;
    }

    /// <summary>Streams whose first event has a <c>Name</c> equal to <paramref name="name"/> (removed containers by name), newest first.</summary>
    public async Task<IReadOnlyList<string>> StreamsCreatedWithNameAsync(string type, string name, CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand(
            $"SELECT stream_id FROM {Events} WHERE type = @type AND data ->> 'Name' = @name ORDER BY seq_id DESC LIMIT 10", connection);
        command.Parameters.AddWithValue("type", type);
        command.Parameters.AddWithValue("name", name);
        var keys = new List<string>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken)) keys.Add(reader.GetString(0));
        return keys;
    }

    /// <summary>How long after its creation a container's first start still counts as the same command.</summary>
    public static readonly TimeSpan StoryWindow = TimeSpan.FromMinutes(1);

    /// <summary>
    /// The docker CLI's <c>docker run</c> is create then start, on two connections: the first start of a
    /// container created moments ago by the same user continues the creation's story (its correlation id);
    /// the start request's own id becomes the causation id.
    /// </summary>
    public async Task<RequestOrigin> JoinCreationStoryAsync(string stream, RequestOrigin origin, CancellationToken cancellationToken = default)
    {
        var first = await QueryAsync(new AuditFilter { Streams = [stream], Limit = 1 }, cancellationToken);
        if (first.Entries is not [var created] || created.User != origin.User || created.CorrelationId is not { } story ||
            story == origin.CorrelationId || DateTimeOffset.UtcNow - created.Time > StoryWindow)
            return origin;
        return origin with { CorrelationId = story, CausationId = origin.CausationId ?? origin.CorrelationId };
    }

    private async Task<NpgsqlConnection> OpenAsync(CancellationToken cancellationToken)
    {
        var connection = store.Storage.Database.CreateConnection();
        await connection.OpenAsync(cancellationToken);
        return connection;
    }

    /// <summary>Fields that are stored for the system's own use and never shown in the audit trail (password hashes).</summary>
    public static IReadOnlyList<string> SecretFields => AuditRedaction.SecretFields;

    public const string Redacted = AuditRedaction.Redacted;

    /// <summary>The event body as the audit trail shows it (see <see cref="AuditRedaction"/>).</summary>
    public static JsonElement Redact(string json) => AuditRedaction.Redact(json);

    /// <summary><c>ContainerStarted</c> or <c>container_started</c> → Marten's type name <c>container_started</c>.</summary>
    public static string TypeName(string text)
    {
        if (text.Contains('_') || text.All(c => !char.IsUpper(c))) return text.ToLowerInvariant();
        var name = new StringBuilder();
        for (var i = 0; i < text.Length; i++)
        {
            if (char.IsUpper(text[i]) && i > 0) name.Append('_');
            name.Append(char.ToLowerInvariant(text[i]));
        }
        return name.ToString();
    }
}
