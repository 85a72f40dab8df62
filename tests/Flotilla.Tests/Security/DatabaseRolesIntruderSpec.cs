using Flotilla.Cluster.EventStore;
using Flotilla.Cluster.Registry;
using Flotilla.Contracts;
using Flotilla.Contracts.Containers;
using Flotilla.Contracts.Registry;
using Flotilla.Tests.Infrastructure;
using Marten;
using Npgsql;
using Xunit;

namespace Flotilla.Tests.Security;

/// <summary>
/// Issue 13 item 14: a node's PostgreSQL login cannot read the registry's signing keys or its users' password hashes,
/// nor change or delete events; a gateway's cannot change events either; both still do their work.
/// </summary>
[Collection("postgres")]
public sealed class DatabaseRolesIntruderSpec(PostgresFixture postgres) : IAsyncLifetime
{
    private readonly string _suffix = Guid.NewGuid().ToString("N")[..8];
    private string _admin = "";
    private DocumentStore _store = null!;

    private string NodeLogin => $"node_{_suffix}";
    private string GatewayLogin => $"gw_{_suffix}";

    public async Task InitializeAsync()
    {
        _admin = await postgres.NewDatabaseAsync("dbroles");
        await DatabaseRoles.SetUpAsync(_admin);
        _store = FlotillaStore.Create(_admin);
        var journal = new MartenEventJournal(_store);
        await journal.AppendAsync(RegistryUserStreams.Key("alice"), 0,
            [new RegistryUserAdded("alice", PasswordHasher.Hash("alice-password"), ["pull", "push"], DateTimeOffset.UtcNow)],
            EventMetadata.From(new RequestOrigin("local", "req-1"), "gw"));
        await new RegistryTokenKeyStore(_store).LoadOrCreateAsync(null, null);
        await DatabaseRoles.AddLoginAsync(_admin, NodeLogin, DatabaseRoles.Node, "node-password-123");
        await DatabaseRoles.AddLoginAsync(_admin, GatewayLogin, DatabaseRoles.Gateway, "gateway-password-123");
    }

    public async Task DisposeAsync()
    {
        _store.Dispose();
        NpgsqlConnection.ClearAllPools();
        // Logins belong to the server, not to the test's database.
        await using var connection = new NpgsqlConnection(_admin);
        await connection.OpenAsync();
        foreach (var login in new[] { NodeLogin, GatewayLogin })
        {
            await using var drop = new NpgsqlCommand($"DROP ROLE IF EXISTS {login}", connection);
            await drop.ExecuteNonQueryAsync();
        }
    }

    // The test server trusts its unix socket, so the login's name is enough (a real server checks the password).
    private string As(string login) => new NpgsqlConnectionStringBuilder(_admin) { Username = login, Pooling = false }.ConnectionString;

    private static async Task<PostgresException> Refused(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return await Assert.ThrowsAsync<PostgresException>(() => command.ExecuteNonQueryAsync());
    }

    private static async Task<long> Count(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return (long)(await command.ExecuteScalarAsync())!;
    }

    [Fact]
    public async Task A_node_login_cannot_read_the_signing_keys_nor_the_password_hashes_nor_rewrite_events()
    {
        var node = As(NodeLogin);
        Assert.Equal(DatabaseIdentity.Restricted, await DatabaseRoles.IdentifyAsync(node, FlotillaStore.DefaultSchema));
        Assert.Equal(DatabaseIdentity.Admin, await DatabaseRoles.IdentifyAsync(_admin, FlotillaStore.DefaultSchema));

        foreach (var sql in new[]
                 {
                     "SELECT * FROM flotilla.mt_doc_registrytokenkey",
                     "SELECT * FROM flotilla.mt_doc_registryuserview",
                     "UPDATE flotilla.mt_events SET data = data",
                     "DELETE FROM flotilla.mt_events",
                     "TRUNCATE flotilla.mt_events",
                     "UPDATE flotilla.mt_doc_auditcheckpoint SET data = data",
                     "ALTER TABLE flotilla.mt_events DISABLE ROW LEVEL SECURITY",
                     "DROP POLICY flotilla_node_read ON flotilla.mt_events",
                     "CREATE TABLE flotilla.intruder (x int)",
                 })
            Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, (await Refused(node, sql)).SqlState);

        // The events that carry a password hash are not rows a node sees; the admin does see them.
        const string hashes = "SELECT count(*) FROM flotilla.mt_events WHERE type = 'registry_user_added'";
        Assert.Equal(1, await Count(_admin, hashes));
        Assert.Equal(0, await Count(node, hashes));
        // Nor may it write one (a user of its own making).
        var forged = await Refused(node,
            "INSERT INTO flotilla.mt_events (seq_id, id, stream_id, version, data, type) " +
            "VALUES (nextval('flotilla.mt_events_sequence'), gen_random_uuid(), 'registry-user-mallory', 1, '{}', 'registry_user_added')");
        Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, forged.SqlState);
    }

    [Fact]
    public async Task A_node_login_still_appends_container_events_and_folds_their_view()
    {
        await using var store = FlotillaStore.Create(As(NodeLogin), identity: DatabaseIdentity.Restricted);
        var journal = new MartenEventJournal(store);
        var id = new string('c', 64);
        await journal.AppendAsync(ContainerStreams.Key(id), 0,
            [new ContainerCreated(id, "web", ContainerDefinition.Minimal("busybox", "sha256:" + new string('a', 64), ["sh"]), "n1", DateTimeOffset.UtcNow)],
            EventMetadata.From(new RequestOrigin("local", "req-2"), "n1"));
        var read = await journal.ReadAsync(ContainerStreams.Key(id));
        Assert.Single(read.Events);
        await using var session = store.QuerySession();
        Assert.Equal("web", (await session.LoadAsync<Flotilla.Cluster.Containers.ContainerView>(ContainerStreams.Key(id)))?.Name);
    }

    [Fact]
    public async Task A_gateway_login_reads_the_keys_and_users_but_cannot_rewrite_events()
    {
        var gateway = As(GatewayLogin);
        Assert.Equal(1, await Count(gateway, "SELECT count(*) FROM flotilla.mt_doc_registrytokenkey"));
        Assert.Equal(1, await Count(gateway, "SELECT count(*) FROM flotilla.mt_events WHERE type = 'registry_user_added'"));
        foreach (var sql in new[] { "UPDATE flotilla.mt_events SET data = data", "DELETE FROM flotilla.mt_events", "TRUNCATE flotilla.mt_events" })
            Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, (await Refused(gateway, sql)).SqlState);
    }
}
