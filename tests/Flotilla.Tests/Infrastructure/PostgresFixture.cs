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
/// every run holds a shared flock on it, and only the last one out stops the server.
/// </summary>
public sealed class PostgresFixture : IAsyncLifetime
{
    public const string EnvironmentVariable = "FLOTILLA_TEST_POSTGRES";
    public const string DefaultDataRoot = "/tmp/flotilla-test-pg";

    private static readonly SemaphoreSlim Gate = new(1, 1);
    private static int _users;
    private static SharedServer? _shared;

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
        return EmbeddedPostgres.EnsureDatabaseAsync(ConnectionString, name);
    }

    private sealed class SharedServer : IAsyncDisposable
    {
        private const int LockSh = 1, LockEx = 2, LockNb = 4;
        private const int ORdWr = 2, OCreat = 0x40, OCloExec = 0x80000;

        private readonly EmbeddedPostgres? _server;
        private readonly int _lockFd;

        private SharedServer(string connectionString, EmbeddedPostgres? server, int lockFd)
        {
            ConnectionString = connectionString;
            _server = server;
            _lockFd = lockFd;
        }

        public string ConnectionString { get; }

        public static async Task<SharedServer> StartAsync()
        {
            var external = Environment.GetEnvironmentVariable(EnvironmentVariable);
            if (!string.IsNullOrWhiteSpace(external))
            {
                return new SharedServer(external, null, -1);
            }

            if (!OperatingSystem.IsLinux())
            {
                throw new PlatformNotSupportedException($"Set {EnvironmentVariable} to run PostgreSQL tests off Linux.");
            }

            Directory.CreateDirectory(DefaultDataRoot, (UnixFileMode)0b111_101_101);
            // Our own fd rather than a FileStream: .NET takes a non-blocking flock of its own on open.
            var lockPath = Path.Combine(DefaultDataRoot, "test-users.lock");
            var fd = open(lockPath, ORdWr | OCreat | OCloExec, 0b110_110_110);
            if (fd < 0)
            {
                throw new IOException($"open {lockPath} failed: errno {Marshal.GetLastPInvokeError()}");
            }

            try
            {
                // Exclusive while starting (or adopting) so a run that is stopping the server finishes first.
                await Task.Run(() => Flock(fd, LockEx));
                var server = await EmbeddedPostgres.StartAsync(DefaultDataRoot, null, CancellationToken.None);
                Flock(fd, LockSh);
                return new SharedServer(server.ConnectionString, server, fd);
            }
            catch
            {
                close(fd);
                throw;
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (_server is null)
            {
                return;
            }

            // Last user out (no other run holds the shared lock) stops the server; otherwise leave it running.
            if (flock(_lockFd, LockEx | LockNb) == 0)
            {
                await _server.DisposeAsync();
            }

            close(_lockFd);
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
