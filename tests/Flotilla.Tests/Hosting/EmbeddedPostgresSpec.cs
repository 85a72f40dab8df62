using System.Diagnostics;
using Flotilla.Cli.Hosting;
using Flotilla.Tests.Infrastructure;
using Npgsql;
using Xunit;

namespace Flotilla.Tests.Hosting;

/// <summary>Each test gets its own data root (its own initdb): start, reuse, crash recovery.</summary>
public sealed class EmbeddedPostgresSpec : IAsyncLifetime
{
    private readonly string _root = Path.Combine("/tmp", $"fpg-spec-{Guid.NewGuid():N}"[..21]);

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync()
    {
        if (Directory.Exists(_root))
        {
            Directory.Delete(_root, recursive: true);
        }

        return Task.CompletedTask;
    }

    [Fact]
    public async Task Starts_answers_queries_and_stops()
    {
        string dataDir;
        await using (var pg = await EmbeddedPostgres.StartAsync(_root, null, Timeout()))
        {
            dataDir = pg.DataDirectory;
            Assert.Equal(1, await ScalarAsync<int>(pg.ConnectionString, "select 1"));
            Assert.Equal("flotilla", await ScalarAsync<string>(pg.ConnectionString, "select current_database()"));

            // Only a unix socket in the private directory: no TCP listener.
            Assert.Equal("", await ScalarAsync<string>(pg.ConnectionString, "show listen_addresses"));
            Assert.True(File.Exists(Path.Combine(_root, "postgres-run", ".s.PGSQL.5432")));

            var other = await pg.CreateDatabaseAsync("spec_other");
            Assert.Equal("spec_other", await ScalarAsync<string>(other, "select current_database()"));
            Assert.Equal(other, await pg.CreateDatabaseAsync("spec_other")); // idempotent
        }

        Assert.False(File.Exists(Path.Combine(dataDir, "postmaster.pid")));
    }

    [Fact]
    public async Task Second_start_reuses_the_cluster()
    {
        await using (var pg = await EmbeddedPostgres.StartAsync(_root, null, Timeout()))
        {
            await ExecAsync(pg.ConnectionString, "create table kept(v text); insert into kept values ('before restart')");
        }

        await using (var pg = await EmbeddedPostgres.StartAsync(_root, null, Timeout()))
        {
            Assert.False(pg.Adopted);
            Assert.Equal("before restart", await ScalarAsync<string>(pg.ConnectionString, "select v from kept"));
        }
    }

    [Fact]
    public async Task Recovers_after_the_postmaster_was_killed()
    {
        string pidFile;
        await using (var pg = await EmbeddedPostgres.StartAsync(_root, null, Timeout()))
        {
            await ExecAsync(pg.ConnectionString, "create table kept(v text); insert into kept values ('committed')");
            pidFile = Path.Combine(pg.DataDirectory, "postmaster.pid");
            var pid = int.Parse(File.ReadLines(pidFile).First());

            Process.GetProcessById(pid).Kill(); // SIGKILL, like the OOM killer
            await WaitUntilDeadAsync(pid);
            Assert.True(File.Exists(pidFile), "a killed postmaster leaves its pid file behind");
            NpgsqlConnection.ClearAllPools();

            // Deliberately no DisposeAsync on this instance's server: it is dead. (The using still runs
            // pg_ctl stop, which finds nothing to stop.)
            await using var again = await EmbeddedPostgres.StartAsync(_root, null, Timeout());
            Assert.False(again.Adopted);
            Assert.Equal("committed", await ScalarAsync<string>(again.ConnectionString, "select v from kept"));
        }
    }

    [Fact]
    public async Task Ignores_a_pid_file_whose_pid_now_belongs_to_another_process()
    {
        string pidFile;
        await using (var pg = await EmbeddedPostgres.StartAsync(_root, null, Timeout()))
        {
            pidFile = Path.Combine(pg.DataDirectory, "postmaster.pid");
        }

        // A stale pid file naming a live, unrelated process (pid reuse after a crash or reboot):
        // PostgreSQL alone would refuse to start ("lock file already exists").
        using var sleeper = Process.Start("sleep", "60");
        try
        {
            await File.WriteAllTextAsync(pidFile, $"{sleeper.Id}\n{Path.Combine(_root, "postgres")}\n");
            await using var pg = await EmbeddedPostgres.StartAsync(_root, null, Timeout());
            Assert.False(pg.Adopted);
            Assert.Equal(1, await ScalarAsync<int>(pg.ConnectionString, "select 1"));
        }
        finally
        {
            sleeper.Kill();
        }
    }

    [Fact]
    public async Task A_running_server_is_adopted_not_started_twice()
    {
        await using var first = await EmbeddedPostgres.StartAsync(_root, null, Timeout());
        var second = await EmbeddedPostgres.StartAsync(_root, null, Timeout());
        Assert.True(second.Adopted);
        Assert.Equal(first.ConnectionString, second.ConnectionString);
        Assert.Equal(1, await ScalarAsync<int>(second.ConnectionString, "select 1"));
    }

    private static CancellationToken Timeout() => new CancellationTokenSource(TimeSpan.FromMinutes(2)).Token;

    internal static async Task<T> ScalarAsync<T>(string connectionString, string sql)
    {
        await using var conn = new NpgsqlConnection(connectionString);
        await conn.OpenAsync();
        await using var cmd = new NpgsqlCommand(sql, conn);
        return (T)(await cmd.ExecuteScalarAsync())!;
    }

    internal static async Task ExecAsync(string connectionString, string sql)
    {
        await using var conn = new NpgsqlConnection(connectionString);
        await conn.OpenAsync();
        await using var cmd = new NpgsqlCommand(sql, conn);
        await cmd.ExecuteNonQueryAsync();
    }

    private static async Task WaitUntilDeadAsync(int pid)
    {
        // Reparented to PID 1, which may not reap it: a zombie counts as dead.
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                var stat = await File.ReadAllTextAsync($"/proc/{pid}/stat");
                if (stat[(stat.LastIndexOf(')') + 2)..].StartsWith('Z'))
                {
                    return;
                }
            }
            catch (IOException)
            {
                return;
            }

            await Task.Delay(50);
        }

        throw new TimeoutException($"postmaster {pid} still alive");
    }
}

[Collection("postgres")]
public sealed class PostgresFixtureSpec(PostgresFixture postgres)
{
    [Fact]
    public async Task Hands_out_a_fresh_database_per_call()
    {
        var a = await postgres.NewDatabaseAsync("Fixture-Spec");
        var b = await postgres.NewDatabaseAsync("Fixture-Spec");
        var nameA = await EmbeddedPostgresSpec.ScalarAsync<string>(a, "select current_database()");
        var nameB = await EmbeddedPostgresSpec.ScalarAsync<string>(b, "select current_database()");
        Assert.StartsWith("fixture_spec_", nameA);
        Assert.NotEqual(nameA, nameB);
    }
}
