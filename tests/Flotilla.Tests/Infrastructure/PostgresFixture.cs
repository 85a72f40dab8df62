using System.Runtime.InteropServices;
using Flotilla.Cli.Hosting;
using Npgsql;
using Xunit;

namespace Flotilla.Tests.Infrastructure;

[CollectionDefinition("postgres")]
public sealed class PostgresCollection : ICollectionFixture<PostgresFixture>
{
}

/// <summary>
/// One PostgreSQL server for the whole test run; each test class asks for a fresh database with
/// <see cref="NewDatabaseAsync"/>. Uses <c>FLOTILLA_TEST_POSTGRES</c> (an Npgsql connection string
/// to any database of an existing server) when set, else an <see cref="EmbeddedPostgres"/> at
/// <c>/tmp/flotilla-test-pg</c>. That directory is shared by concurrent test runs (other worktrees):
/// every run holds a shared flock on <c>test-users.lock</c> there, and only the last one out stops the server.
/// </summary>
public sealed class PostgresFixture : IAsyncLifetime
{
    public const string EnvironmentVariable = "FLOTILLA_TEST_POSTGRES";
    public const string DefaultDataRoot = "/tmp/flotilla-test-pg";

    private static readonly SemaphoreSlim Gate = new(1, 1);
    private static int _users;
    private static SharedServer? _shared;
    private readonly List<string> _databases = [];

    /// <summary>Connection string to the server's <c>flotilla</c> (or the external) database.</summary>
    public string ConnectionString { get; private set; } = "";

    public async Task InitializeAsync()
    {
        await Gate.WaitAsync();
        try
        {
            _shared ??= await SharedServer.StartAsync();
            _users++;
            ConnectionString = _shared.ConnectionString;
        }
        finally
        {
            Gate.Release();
        }
    }

    public async Task DisposeAsync()
    {
        await DropDatabasesAsync();
        await Gate.WaitAsync();
        try
        {
            if (--_users == 0 && _shared is not null)
            {
                await _shared.DisposeAsync();
                _shared = null;
            }
        }
        finally
        {
            Gate.Release();
        }
    }

    /// <summary>Creates a database named <c>&lt;prefix&gt;_&lt;random&gt;</c> and returns its connection string.</summary>
    public Task<string> NewDatabaseAsync(string prefix)
    {
        var clean = new string(prefix.ToLowerInvariant().Select(c => char.IsAsciiLetterOrDigit(c) ? c : '_').ToArray());
        if (clean.Length == 0 || char.IsAsciiDigit(clean[0]))
        {
            clean = "t_" + clean;
        }

        var stem = clean[..Math.Min(clean.Length, 40)];
        var name = $"{stem}_{Guid.NewGuid():N}"[..(stem.Length + 13)];
        lock (_databases)
        {
            _databases.Add(name);
        }

        return EmbeddedPostgres.EnsureDatabaseAsync(ConnectionString, name);
    }

    // The shared server outlives test runs: do not let it fill up with test databases.
    private async Task DropDatabasesAsync()
    {
        if (_databases.Count == 0)
        {
            return;
        }

        NpgsqlConnection.ClearAllPools();
        var admin = new NpgsqlConnectionStringBuilder(ConnectionString) { Pooling = false };
        await using var conn = new NpgsqlConnection(admin.ConnectionString);
        await conn.OpenAsync();
        foreach (var name in _databases)
        {
            await using var drop = new NpgsqlCommand($"drop database if exists \"{name}\" with (force)", conn);
            await drop.ExecuteNonQueryAsync();
        }
    }

    private sealed class SharedServer : IAsyncDisposable
    {
        private const int LockSh = 1, LockEx = 2, LockNb = 4, LockUn = 8;
        private const int ORdWr = 2, OCreat = 0x40, OCloExec = 0x80000;

        private readonly EmbeddedPostgres? _server;
        private readonly int _stateFd;
        private readonly int _usersFd;

        private SharedServer(string connectionString, EmbeddedPostgres? server, int stateFd, int usersFd)
        {
            ConnectionString = connectionString;
            _server = server;
            _stateFd = stateFd;
            _usersFd = usersFd;
        }

        public string ConnectionString { get; }

        public static async Task<SharedServer> StartAsync()
        {
            var external = Environment.GetEnvironmentVariable(EnvironmentVariable);
            if (!string.IsNullOrWhiteSpace(external))
            {
                return new SharedServer(external, null, -1, -1);
            }

            if (!OperatingSystem.IsLinux())
            {
                throw new PlatformNotSupportedException($"Set {EnvironmentVariable} to run PostgreSQL tests off Linux.");
            }

            Directory.CreateDirectory(DefaultDataRoot, (UnixFileMode)0b111_101_101);
            // Two flock(2) files, opened as our own fds (a .NET FileStream takes a flock of its own):
            // "state" is held exclusively while starting/adopting or stopping the server; "users" is
            // held shared by every run using it (test-users.lock), so the last run out can tell that it is the last.
            var stateFd = OpenLockFile("state.lock");
            var usersFd = -1;
            try
            {
                await Task.Run(() => Flock(stateFd, LockEx));
                usersFd = OpenLockFile("test-users.lock"); // name shared with the first version of this fixture
                Flock(usersFd, LockSh);
                var server = await EmbeddedPostgres.StartAsync(DefaultDataRoot, null, CancellationToken.None);
                flock(stateFd, LockUn);
                return new SharedServer(server.ConnectionString, server, stateFd, usersFd);
            }
            catch
            {
                if (usersFd >= 0)
                {
                    close(usersFd);
                }

                flock(stateFd, LockUn);
                close(stateFd);
                throw;
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (_server is null)
            {
                return;
            }

            await Task.Run(() => Flock(_stateFd, LockEx));
            try
            {
                // Last user out (no other run holds "users" shared) stops the server; otherwise leave it running.
                if (flock(_usersFd, LockEx | LockNb) == 0)
                {
                    await _server.DisposeAsync();
                }
            }
            finally
            {
                close(_usersFd);
                close(_stateFd);
            }
        }

        private static int OpenLockFile(string name)
        {
            var path = Path.Combine(DefaultDataRoot, name);
            var fd = open(path, ORdWr | OCreat | OCloExec, 0b110_110_110);
            return fd >= 0 ? fd : throw new IOException($"open {path} failed: errno {Marshal.GetLastPInvokeError()}");
        }

        private static void Flock(int fd, int operation)
        {
            while (flock(fd, operation) != 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno != 4) // EINTR
                {
                    throw new IOException($"flock({operation}) failed: errno {errno}");
                }
            }
        }

        [DllImport("libc", SetLastError = true)]
        private static extern int flock(int fd, int operation);

        [DllImport("libc", SetLastError = true, CharSet = CharSet.Ansi, BestFitMapping = false)]
        private static extern int open(string path, int flags, int mode);

        [DllImport("libc")]
        private static extern int close(int fd);
    }
}
