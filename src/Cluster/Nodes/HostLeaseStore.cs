using Marten;
using Npgsql;

namespace Flotilla.Cluster.Nodes;

/// <summary>A host's lease as the database sees it at <paramref name="DatabaseNow"/> (its own clock, never a host's).</summary>
public sealed record HostLease(string Host, long Epoch, DateTimeOffset ExpiresAt, DateTimeOffset DatabaseNow)
{
    /// <summary>Expired by at least <paramref name="margin"/>: no renewal of this epoch can succeed any more.</summary>
    public bool ExpiredBy(TimeSpan margin) => DatabaseNow >= ExpiresAt + margin;

    /// <summary>How long until <see cref="ExpiredBy"/> holds (zero when it does).</summary>
    public TimeSpan ExpiresIn(TimeSpan margin) => ExpiresAt + margin - DatabaseNow is var left && left > TimeSpan.Zero ? left : TimeSpan.Zero;
}

/// <summary>What a starting engine got: the same epoch (its predecessor's lease was still valid) or a new one.</summary>
/// <param name="PreviousEpoch">The epoch before this one when it had expired (its runs are fenced); null when continued or first.</param>
public sealed record LeaseGrant(long Epoch, bool Continued, long? PreviousEpoch, DateTimeOffset ExpiresAt);

/// <summary>
/// One row per host in <c>&lt;schema&gt;.host_lease</c>: <c>(host, epoch, expires_at)</c>, with every time taken from the
/// database's clock (<c>clock_timestamp()</c>) so no host's clock matters. A lease is renewed only while it has not
/// expired; once it has, the next holder gets a higher epoch — the fencing token every run carries.
/// </summary>
public sealed class HostLeaseStore
{
    /// <summary>An arbitrary advisory lock key ("hostleas") taken while the table is made.</summary>
    private const long TableLockKey = 0x686F73746C656173;

    private readonly Func<NpgsqlConnection> _connect;
    private readonly string _schema;

    /// <summary>Through the event store's database.</summary>
    public HostLeaseStore(IDocumentStore store)
    {
        _connect = store.Storage.Database.CreateConnection;
        _schema = store.Options.DatabaseSchemaName;
    }

    /// <summary>
    /// Straight from a connection string: a starting engine takes its lease before anything else is built (the event
    /// store included), so a restart confirms it as early as it can.
    /// </summary>
    public HostLeaseStore(string connectionString, string schema)
    {
        _connect = () => new NpgsqlConnection(connectionString);
        _schema = schema;
    }

    private string Table => $"{_schema}.host_lease";

    private async Task<NpgsqlConnection> OpenAsync(CancellationToken cancellationToken)
    {
        var connection = _connect();
        await connection.OpenAsync(cancellationToken);
        return connection;
    }

    /// <summary>Creates the table if missing; processes starting together take turns.</summary>
    public async Task EnsureTableAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenAsync(cancellationToken);
        // A restricted identity (DatabaseRoles) may not create anything, not even "if not exists": look first.
        await using (var exists = new NpgsqlCommand($"SELECT to_regclass('{Table}') IS NOT NULL", connection))
            if (await exists.ExecuteScalarAsync(cancellationToken) is true) return;
        await Execute(connection, $"SELECT pg_advisory_lock({TableLockKey})", cancellationToken);
        try
        {
            await Execute(connection, $"CREATE SCHEMA IF NOT EXISTS {_schema}", cancellationToken);
            await Execute(connection, $"""
                CREATE TABLE IF NOT EXISTS {Table} (
                    host text PRIMARY KEY,
                    epoch bigint NOT NULL,
                    expires_at timestamptz NOT NULL,
                    acquired_at timestamptz NOT NULL)
                """, cancellationToken);
        }
        finally
        {
            await Execute(connection, $"SELECT pg_advisory_unlock({TableLockKey})", CancellationToken.None);
        }
    }

    /// <summary>
    /// Takes <paramref name="host"/>'s lease for <paramref name="ttl"/>: the same epoch while the last one has not
    /// expired (an engine restart keeps its containers), else the next epoch (whatever ran under the old one is fenced).
    /// </summary>
    public async Task<LeaseGrant> AcquireAsync(string host, TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        long? oldEpoch = null;
        var oldValid = false;
        await using (var read = new NpgsqlCommand($"SELECT epoch, expires_at > clock_timestamp() FROM {Table} WHERE host = @host FOR UPDATE", connection, transaction))
        {
            read.Parameters.AddWithValue("host", host);
            await using var reader = await read.ExecuteReaderAsync(cancellationToken);
            if (await reader.ReadAsync(cancellationToken))
            {
                oldEpoch = reader.GetInt64(0);
                oldValid = reader.GetBoolean(1);
            }
        }
        var epoch = oldEpoch is { } e ? (oldValid ? e : e + 1) : 1;
        await using var write = new NpgsqlCommand($"""
            INSERT INTO {Table} (host, epoch, expires_at, acquired_at) VALUES (@host, @epoch, clock_timestamp() + @ttl, clock_timestamp())
            ON CONFLICT (host) DO UPDATE SET epoch = EXCLUDED.epoch, expires_at = EXCLUDED.expires_at,
                acquired_at = CASE WHEN {Table}.epoch = EXCLUDED.epoch THEN {Table}.acquired_at ELSE EXCLUDED.acquired_at END
            RETURNING expires_at
            """, connection, transaction);
        write.Parameters.AddWithValue("host", host);
        write.Parameters.AddWithValue("epoch", epoch);
        write.Parameters.AddWithValue("ttl", ttl);
        var expires = (DateTime)(await write.ExecuteScalarAsync(cancellationToken))!;
        await transaction.CommitAsync(cancellationToken);
        return new LeaseGrant(epoch, oldValid, oldEpoch is { } old && !oldValid ? old : null, new DateTimeOffset(expires, TimeSpan.Zero));
    }

    /// <summary>Extends the lease of <paramref name="epoch"/> if it has not expired; null when it has (it is lost for good).</summary>
    public async Task<DateTimeOffset?> RenewAsync(string host, long epoch, TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var renew = new NpgsqlCommand($"""
            UPDATE {Table} SET expires_at = clock_timestamp() + @ttl
            WHERE host = @host AND epoch = @epoch AND expires_at > clock_timestamp()
            RETURNING expires_at
            """, connection);
        renew.Parameters.AddWithValue("host", host);
        renew.Parameters.AddWithValue("epoch", epoch);
        renew.Parameters.AddWithValue("ttl", ttl);
        return await renew.ExecuteScalarAsync(cancellationToken) is DateTime expires ? new DateTimeOffset(expires, TimeSpan.Zero) : null;
    }

    /// <summary>Ends the lease of <paramref name="epoch"/> now: the host stopped its containers, the scheduler need not wait.</summary>
    public async Task ReleaseAsync(string host, long epoch, CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var release = new NpgsqlCommand($"""
            UPDATE {Table} SET expires_at = LEAST(expires_at, clock_timestamp()) WHERE host = @host AND epoch = @epoch
            """, connection);
        release.Parameters.AddWithValue("host", host);
        release.Parameters.AddWithValue("epoch", epoch);
        await release.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Every host's lease, with the database's time of the read.</summary>
    public async Task<IReadOnlyDictionary<string, HostLease>> AllAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var read = new NpgsqlCommand($"SELECT host, epoch, expires_at, clock_timestamp() FROM {Table}", connection);
        var leases = new Dictionary<string, HostLease>();
        try
        {
            await using var reader = await read.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
                leases[reader.GetString(0)] = new HostLease(reader.GetString(0), reader.GetInt64(1),
                    new DateTimeOffset(reader.GetDateTime(2), TimeSpan.Zero), new DateTimeOffset(reader.GetDateTime(3), TimeSpan.Zero));
        }
        catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.UndefinedTable)
        {
            // No host has taken a lease yet.
        }
        return leases;
    }

    private static async Task Execute(NpgsqlConnection connection, string sql, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }
}
