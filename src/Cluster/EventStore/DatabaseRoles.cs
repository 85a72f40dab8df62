using Flotilla.Cluster.Containers;
using Flotilla.Cluster.Images;
using Flotilla.Cluster.Nodes;
using Flotilla.Cluster.Registry;
using Flotilla.Contracts.Registry;
using Marten;
using Npgsql;

namespace Flotilla.Cluster.EventStore;

/// <summary>What the PostgreSQL identity a process connects with may do to the schema.</summary>
public enum DatabaseIdentity
{
    /// <summary>Owns the schema (or is a superuser, or may create it): migrates it and grants the restricted roles.</summary>
    Admin,

    /// <summary>A member of <see cref="DatabaseRoles.Node"/> or <see cref="DatabaseRoles.Gateway"/>: uses the schema, never changes it.</summary>
    Restricted,
}

/// <summary>
/// The cluster's PostgreSQL roles. The admin identity (the schema's owner) migrates the schema and grants two group
/// roles; operators make one login per process in one of them. A node may append events and write the read models
/// of containers, images, nodes and repositories and its host lease; it cannot read the registry's signing keys, its
/// users or the events that carry their password hashes (row-level security), nor change or delete any event. A
/// gateway may read and write every table but cannot change or delete events either.
/// </summary>
public static class DatabaseRoles
{
    public const string Node = "flotilla_node";
    public const string Gateway = "flotilla_gateway";

    /// <summary>An arbitrary advisory lock key ("flt-role"): processes starting together grant one at a time.</summary>
    private const long GrantLockKey = 0x666C742D726F6C65;

    /// <summary>Events whose bodies hold a password hash: rows a node does not see.</summary>
    public static readonly IReadOnlyList<Type> SecretEventTypes =
        [typeof(RegistryUserAdded), typeof(RegistryUserPasswordChanged), typeof(RegistryUserPasswordRehashed)];

    /// <summary>Read models a node's appends fold into (inline projections).</summary>
    private static readonly IReadOnlyList<Type> NodeDocuments = [typeof(ContainerView), typeof(NodeView), typeof(ImageView), typeof(RepositoryView)];

    /// <summary>
    /// Which identity <paramref name="connectionString"/> is for <paramref name="schema"/>: admin when it is a superuser,
    /// owns the schema (or is a member of its owner), or may create it when it is missing.
    /// </summary>
    /// <exception cref="InvalidOperationException">A restricted identity and no schema yet: the admin must set it up first.</exception>
    public static async Task<DatabaseIdentity> IdentifyAsync(string connectionString, string schema, CancellationToken cancellationToken = default)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand("""
            SELECT r.rolsuper, n.oid IS NOT NULL, coalesce(pg_has_role(current_user, n.nspowner, 'USAGE'), false),
                   has_database_privilege(current_database(), 'CREATE')
            FROM pg_roles r LEFT JOIN pg_namespace n ON n.nspname = @schema
            WHERE r.rolname = current_user
            """, connection);
        command.Parameters.AddWithValue("schema", schema);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken)) throw new InvalidOperationException("PostgreSQL does not know the current user");
        var (super, exists, owner, mayCreate) = (reader.GetBoolean(0), reader.GetBoolean(1), reader.GetBoolean(2), reader.GetBoolean(3));
        if (super || owner || (!exists && mayCreate)) return DatabaseIdentity.Admin;
        if (!exists)
            throw new InvalidOperationException(
                $"schema '{schema}' does not exist and user '{connection.UserName}' may not create it: run `flotilla db setup` with the admin identity first");
        return DatabaseIdentity.Restricted;
    }

    /// <summary>
    /// Creates the group roles if missing and grants them exactly what they need in the store's schema (taken back and
    /// given again, so a table that stopped being a node's is no longer one). Run by the admin identity after the
    /// schema is migrated; idempotent.
    /// </summary>
    public static async Task GrantAsync(IDocumentStore store, CancellationToken cancellationToken = default)
    {
        foreach (var type in NodeDocuments.Concat([typeof(RegistryUserView), typeof(RegistryTokenKey), typeof(Audit.AuditCheckpoint)]))
            await store.Storage.Database.EnsureStorageExistsAsync(type, cancellationToken);
        await store.Storage.Database.EnsureStorageExistsAsync(typeof(JasperFx.Events.IEvent), cancellationToken);
        await new HostLeaseStore(store).EnsureTableAsync(cancellationToken);

        await using var connection = store.Storage.Database.CreateConnection();
        await connection.OpenAsync(cancellationToken);
        foreach (var role in new[] { Node, Gateway })
        {
            // Roles belong to the server, not the database: another database's first process may make them at the same time.
            await using var create = new NpgsqlCommand($"""
                DO $$ BEGIN
                  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN CREATE ROLE {role} NOLOGIN; END IF;
                EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
                END $$
                """, connection);
            await create.ExecuteNonQueryAsync(cancellationToken);
        }

        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using (var grant = new NpgsqlCommand(GrantSql(store), connection, transaction))
            await grant.ExecuteNonQueryAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>
    /// <c>flotilla db setup</c>: as the admin identity, brings the schema up to date (what an admin process does at its
    /// start) and grants the roles, so restricted processes can start before any admin one has.
    /// </summary>
    public static async Task SetUpAsync(string adminConnectionString, string schema = FlotillaStore.DefaultSchema, CancellationToken cancellationToken = default)
    {
        if (await IdentifyAsync(adminConnectionString, schema, cancellationToken) != DatabaseIdentity.Admin)
            throw new InvalidOperationException("this PostgreSQL user does not own the schema: give the admin identity (the schema's owner or a superuser)");
        await ContainerNameRepair.RunAsync(adminConnectionString, schema, cancellationToken);
        await using var store = FlotillaStore.Create(adminConnectionString, schema);
        await store.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
        await new Audit.AuditQuery(store).EnsureIndexesAsync(cancellationToken);
        await GrantAsync(store, cancellationToken);
    }

    /// <summary><c>flotilla db login</c>: a PostgreSQL login in <paramref name="role"/> (made or, if it exists, given a new password).</summary>
    public static async Task AddLoginAsync(string adminConnectionString, string login, string role, string password, CancellationToken cancellationToken = default)
    {
        if (role is not (Node or Gateway)) throw new ArgumentException($"role must be {Node} or {Gateway}", nameof(role));
        if (!System.Text.RegularExpressions.Regex.IsMatch(login, "^[a-z_][a-z0-9_]{0,62}$"))
            throw new ArgumentException($"login '{login}': lower-case letters, digits and '_', at most 63", nameof(login));
        await using var connection = new NpgsqlConnection(adminConnectionString);
        await connection.OpenAsync(cancellationToken);
        // format() quotes the name and the password; CREATE ROLE takes no parameters.
        await using var command = new NpgsqlCommand("""
            SELECT CASE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = @login)
                THEN format('ALTER ROLE %I LOGIN PASSWORD %L', @login, @password)
                ELSE format('CREATE ROLE %I LOGIN PASSWORD %L', @login, @password) END,
                format('GRANT %I TO %I', @role, @login)
            """, connection);
        command.Parameters.AddWithValue("login", login);
        command.Parameters.AddWithValue("password", password);
        command.Parameters.AddWithValue("role", role);
        string create, grant;
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            await reader.ReadAsync(cancellationToken);
            (create, grant) = (reader.GetString(0), reader.GetString(1));
        }
        await using (var run = new NpgsqlCommand(create, connection)) await run.ExecuteNonQueryAsync(cancellationToken);
        await using (var run = new NpgsqlCommand(grant, connection)) await run.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>The grants and policies for the store's schema (one transaction; the roles must exist).</summary>
    public static string GrantSql(IDocumentStore store)
    {
        var schema = store.Options.DatabaseSchemaName;
        var events = $"{schema}.mt_events";
        string Table(Type document) => store.Options.FindOrResolveDocumentType(document).TableName.QualifiedName;
        var graph = store.Options.Events as Marten.Events.EventGraph ?? throw new ArgumentException("a Marten event store is needed", nameof(store));
        var secretTypes = string.Join(", ", SecretEventTypes.Select(t => $"'{graph.EventMappingFor(t).EventTypeName}'"));
        return $"""
            SELECT pg_advisory_xact_lock({GrantLockKey});
            GRANT USAGE ON SCHEMA {schema} TO {Node}, {Gateway};
            REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {Node}, {Gateway};
            REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {Node}, {Gateway};
            GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {schema} TO {Node}, {Gateway};
            GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA {schema} TO {Gateway};
            REVOKE UPDATE, DELETE, TRUNCATE ON {events} FROM {Gateway};
            GRANT SELECT, INSERT ON {events} TO {Node};
            GRANT SELECT, INSERT, UPDATE ON {schema}.mt_streams TO {Node};
            GRANT SELECT, INSERT, UPDATE, DELETE ON {string.Join(", ", NodeDocuments.Select(Table))} TO {Node};
            GRANT SELECT ON {Table(typeof(Audit.AuditCheckpoint))} TO {Node};
            GRANT SELECT, INSERT, UPDATE ON {schema}.host_lease TO {Node};
            ALTER TABLE {events} ENABLE ROW LEVEL SECURITY;
            DROP POLICY IF EXISTS flotilla_node_read ON {events};
            DROP POLICY IF EXISTS flotilla_node_append ON {events};
            DROP POLICY IF EXISTS flotilla_gateway_all ON {events};
            CREATE POLICY flotilla_node_read ON {events} FOR SELECT TO {Node} USING (type <> ALL (ARRAY[{secretTypes}]));
            CREATE POLICY flotilla_node_append ON {events} FOR INSERT TO {Node} WITH CHECK (type <> ALL (ARRAY[{secretTypes}]));
            CREATE POLICY flotilla_gateway_all ON {events} FOR ALL TO {Gateway} USING (true) WITH CHECK (true);
            """;
    }
}
