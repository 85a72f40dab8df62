using System.CommandLine;
using Flotilla.Cluster.EventStore;

namespace Flotilla.Cli.Commands;

/// <summary>
/// <c>flotilla db setup|login</c>: the cluster's PostgreSQL roles on an external server, run with the admin identity
/// (the schema's owner or a superuser): nodes and gateways then connect with restricted logins.
/// </summary>
public static class DbCommand
{
    public static Command Create()
    {
        var db = new Command("db", "Set up the shared PostgreSQL: schema, roles for nodes and gateways, their logins");
        db.Subcommands.Add(Setup());
        db.Subcommands.Add(Login());
        return db;
    }

    private static Option<string?> AdminPostgres() =>
        Flags.OptionalWithEnv("--postgres", "FLOTILLA_POSTGRES", "PostgreSQL connection string of the admin identity (the schema's owner)");

    private static Command Setup()
    {
        var postgres = AdminPostgres();
        var postgresFile = Flags.PostgresFile();
        var command = new Command("setup",
            $"Migrate the schema and grant the roles {DatabaseRoles.Node} and {DatabaseRoles.Gateway} (idempotent; every admin start does it too)")
        { postgres, postgresFile };
        command.SetAction(async (result, cancellationToken) =>
        {
            if (ConnectionString(result, postgres, postgresFile, "db setup") is not { } connectionString) return 2;
            try
            {
                await DatabaseRoles.SetUpAsync(connectionString, cancellationToken: cancellationToken);
            }
            catch (Exception ex) when (ex is InvalidOperationException or Npgsql.NpgsqlException)
            {
                Console.Error.WriteLine($"flotilla db setup: {ex.Message}");
                return 1;
            }
            Console.WriteLine($"Schema ready; roles {DatabaseRoles.Node} and {DatabaseRoles.Gateway} granted.");
            Console.WriteLine("Give each process a login of its own: flotilla db login NAME --role node|gateway --password-file FILE");
            return 0;
        });
        return command;
    }

    private static Command Login()
    {
        var postgres = AdminPostgres();
        var postgresFile = Flags.PostgresFile();
        var name = new Argument<string>("name") { Description = "the login's name (lower-case letters, digits, '_')" };
        var role = new Option<string>("--role") { Description = "node or gateway", Required = true };
        role.AcceptOnlyFromAmong("node", "gateway");
        var passwordFile = new Option<string>("--password-file") { Description = "file holding the login's password", Required = true };
        var command = new Command("login", "Create a PostgreSQL login for one node or gateway (or set its password)")
        { name, role, passwordFile, postgres, postgresFile };
        command.SetAction(async (result, cancellationToken) =>
        {
            if (ConnectionString(result, postgres, postgresFile, "db login") is not { } connectionString) return 2;
            string password;
            try
            {
                password = File.ReadAllText(result.GetValue(passwordFile)!).TrimEnd('\r', '\n');
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"flotilla db login: --password-file: {ex.Message}");
                return 2;
            }
            if (password.Length < 12)
            {
                Console.Error.WriteLine("flotilla db login: the password must have at least 12 characters");
                return 2;
            }
            var group = result.GetValue(role) == "node" ? DatabaseRoles.Node : DatabaseRoles.Gateway;
            try
            {
                await DatabaseRoles.AddLoginAsync(connectionString, result.GetValue(name)!, group, password, cancellationToken);
            }
            catch (Exception ex) when (ex is ArgumentException or Npgsql.NpgsqlException)
            {
                Console.Error.WriteLine($"flotilla db login: {ex.Message}");
                return 1;
            }
            Console.WriteLine($"{result.GetValue(name)} is a {group} login.");
            return 0;
        });
        return command;
    }

    private static string? ConnectionString(ParseResult result, Option<string?> postgres, Option<string?> postgresFile, string verb)
    {
        try
        {
            if (Flags.Postgres(result.GetValue(postgres), result.GetValue(postgresFile)) is { } connectionString) return connectionString;
            Console.Error.WriteLine($"flotilla {verb}: --postgres or --postgres-file is required");
        }
        catch (ArgumentException ex)
        {
            Console.Error.WriteLine($"flotilla {verb}: {ex.Message}");
        }
        return null;
    }
}
