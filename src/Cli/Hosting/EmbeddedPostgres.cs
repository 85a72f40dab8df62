using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Flotilla.Cli.Hosting;

/// <summary>
/// A private PostgreSQL 15 server for a single-host Flotilla: the zero-config default.
/// Layout under <c>dataRoot</c>: <c>postgres/</c> (cluster, with <c>server.log</c>) and
/// <c>postgres-run/</c> (the unix socket directory). It never listens on TCP
/// (<c>listen_addresses=''</c>), so nothing outside this machine's file system can reach it.
/// PostgreSQL refuses to run as root; as root every PostgreSQL binary runs as user
/// <c>postgres</c> through <c>runuser</c> and the directories are owned by that user.
/// </summary>
public sealed partial class EmbeddedPostgres : IAsyncDisposable
{
    public const string DefaultBinDirectory = "/usr/lib/postgresql/15/bin";
    public const string DefaultDatabase = "flotilla";

    // With listen_addresses='' the port only names the socket file (.s.PGSQL.<port>) in our
    // private socket directory, so a fixed value never clashes with another server.
    private const int SocketPort = 5432;
    private const string ServiceUser = "postgres";
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);

    private readonly ILogger? _log;
    private readonly string _binDir;
    private readonly bool _asServiceUser;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, bool> _handedOut = new();
    private int _stopped;

    private EmbeddedPostgres(string dataRoot, string binDir, bool asServiceUser, ILogger? log)
    {
        DataRoot = dataRoot;
        DataDirectory = Path.Combine(dataRoot, "postgres");
        SocketDirectory = Path.Combine(dataRoot, "postgres-run");
        LogFile = Path.Combine(DataDirectory, "server.log");
        _binDir = binDir;
        _asServiceUser = asServiceUser;
        _log = log;
        ConnectionString = BuildConnectionString(DefaultDatabase);
        _handedOut[ConnectionString] = true;
    }

    public string DataRoot { get; }
    public string DataDirectory { get; }
    public string SocketDirectory { get; }
    public string LogFile { get; }

    /// <summary>Npgsql connection string for the <c>flotilla</c> database.</summary>
    public string ConnectionString { get; }

    /// <summary>True when this instance found the server already running and took it over.</summary>
    public bool Adopted { get; private set; }

    public static Task<EmbeddedPostgres> StartAsync(string dataRoot, ILogger? log, CancellationToken ct) =>
        StartAsync(dataRoot, log, DefaultBinDirectory, ct);

    public static async Task<EmbeddedPostgres> StartAsync(string dataRoot, ILogger? log, string binDirectory, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(dataRoot);
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("The embedded PostgreSQL runs on Linux only.");
        }

        if (!File.Exists(Path.Combine(binDirectory, "pg_ctl")))
        {
            throw new EmbeddedPostgresException(
                $"PostgreSQL binaries not found in {binDirectory} (install the 'postgresql' package: scripts/install-deps.sh).");
        }

        var root = Path.GetFullPath(dataRoot);
        var asServiceUser = IsRoot();
        if (asServiceUser)
        {
            await EnsureServiceUserExistsAsync(ct).ConfigureAwait(false);
        }

        var pg = new EmbeddedPostgres(root, binDirectory, asServiceUser, log);
        await pg.PrepareDirectoriesAsync(ct).ConfigureAwait(false);
        await pg.InitIfMissingAsync(ct).ConfigureAwait(false);
        var realData = RealPath(pg.DataDirectory);
        var alreadyRunning = await pg.RecoverStaleStateAsync(realData, ct).ConfigureAwait(false);
        if (alreadyRunning)
        {
            pg.Adopted = true;
            log?.LogInformation("PostgreSQL already running for {DataDirectory}; reusing it", pg.DataDirectory);
        }
        else
        {
            await pg.StartServerAsync(ct).ConfigureAwait(false);
        }

        try
        {
            await EnsureDatabaseAsync(pg.BuildConnectionString("postgres"), DefaultDatabase, ct).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            if (!pg.Adopted)
            {
                await pg.DisposeAsync().ConfigureAwait(false); // ours: do not leave it running
            }

            throw new EmbeddedPostgresException(
                $"PostgreSQL at {pg.SocketDirectory} is not usable: {ex.Message}\n{pg.LogTail()}", ex);
        }

        return pg;
    }

    /// <summary>Creates database <paramref name="name"/> on this server if missing; returns its connection string.</summary>
    public async Task<string> CreateDatabaseAsync(string name, CancellationToken ct = default)
    {
        var cs = await EnsureDatabaseAsync(BuildConnectionString("postgres"), name, ct).ConfigureAwait(false);
        _handedOut[cs] = true;
        return cs;
    }

    /// <summary>
    /// Creates database <paramref name="name"/> on the server that <paramref name="serverConnectionString"/>
    /// points at (any database on it) if missing, and returns a connection string for the new database.
    /// Retries for a while when the server is still starting up.
    /// </summary>
    public static async Task<string> EnsureDatabaseAsync(string serverConnectionString, string name, CancellationToken ct = default)
    {
        if (!DatabaseName().IsMatch(name))
        {
            throw new ArgumentException($"Invalid database name '{name}' (letters, digits, '_', at most 63).", nameof(name));
        }

        var admin = new NpgsqlConnectionStringBuilder(serverConnectionString) { Pooling = false };
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            try
            {
                await using var conn = new NpgsqlConnection(admin.ConnectionString);
                await conn.OpenAsync(ct).ConfigureAwait(false);
                await using var exists = new NpgsqlCommand("select 1 from pg_database where datname = @n", conn);
                exists.Parameters.AddWithValue("n", name);
                if (await exists.ExecuteScalarAsync(ct).ConfigureAwait(false) is null)
                {
                    await using var create = new NpgsqlCommand($"create database \"{name}\"", conn);
                    try
                    {
                        await create.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
                    }
                    catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.DuplicateDatabase)
                    {
                        // Created concurrently by someone else: fine.
                    }
                }

                break;
            }
            catch (Exception e) when (IsTransientStartup(e) && DateTime.UtcNow < deadline)
            {
                await Task.Delay(250, ct).ConfigureAwait(false);
            }
        }

        return new NpgsqlConnectionStringBuilder(serverConnectionString) { Database = name }.ConnectionString;
    }

    /// <summary>
    /// Writes dirty pages out now (<c>CHECKPOINT</c>), while the rest of the process stops, so the shutdown
    /// checkpoint of <see cref="DisposeAsync"/> finds little left to do. Best effort: the stop does it anyway.
    /// </summary>
    public async Task CheckpointAsync()
    {
        try
        {
            await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(BuildConnectionString("postgres")) { Pooling = false }.ConnectionString);
            await connection.OpenAsync().ConfigureAwait(false);
            await using var command = new NpgsqlCommand("CHECKPOINT", connection) { CommandTimeout = 30 };
            await command.ExecuteNonQueryAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException)
        {
            _log?.LogDebug("checkpoint before the stop failed: {Message}", ex.Message);
        }
    }

    /// <summary>Stops the server (<c>pg_ctl stop -m fast</c>). Idempotent.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _stopped, 1) == 1)
        {
            return;
        }

        // Idle pooled connections would otherwise be handed out broken after the stop.
        foreach (var cs in _handedOut.Keys)
        {
            using var conn = new NpgsqlConnection(cs);
            NpgsqlConnection.ClearPool(conn);
        }

        var result = await RunPgAsync(
            "pg_ctl", ["-D", DataDirectory, "-m", "fast", "-w", "-t", "60", "stop"], CancellationToken.None).ConfigureAwait(false);
        if (result.ExitCode != 0 && File.Exists(Path.Combine(DataDirectory, "postmaster.pid")))
        {
            _log?.LogWarning("pg_ctl stop failed ({ExitCode}): {Output}", result.ExitCode, result.Output);
        }
        else
        {
            _log?.LogInformation("PostgreSQL stopped ({DataDirectory})", DataDirectory);
        }
    }

    private string BuildConnectionString(string database) => new NpgsqlConnectionStringBuilder
    {
        Host = SocketDirectory,
        Port = SocketPort,
        Username = ServiceUser,
        Database = database,
        ApplicationName = "flotilla",
        Pooling = true,
        MinPoolSize = 0,
        MaxPoolSize = 50,
        ConnectionIdleLifetime = 60,
        Timeout = 15,
        CommandTimeout = 30,
    }.ConnectionString;

    [SupportedOSPlatform("linux")]
    private async Task PrepareDirectoriesAsync(CancellationToken ct)
    {
        // 0711: the service user passes through to its own directories; nobody else lists or reads the data root.
        const UnixFileMode traversable = Flotilla.NodeRuntime.Host.DataRootPermissions.Root;
        const UnixFileMode privateDir = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

        Directory.CreateDirectory(DataRoot, traversable);
        if (_asServiceUser)
        {
            // The postgres user must be able to reach <dataRoot>/postgres: every ancestor needs o+x.
            for (var dir = new DirectoryInfo(DataRoot); dir is not null; dir = dir.Parent)
            {
                var mode = dir.UnixFileMode;
                if ((mode & UnixFileMode.OtherExecute) == 0)
                {
                    _log?.LogWarning("Adding o+x to {Directory} so user postgres can reach its data directory", dir.FullName);
                    File.SetUnixFileMode(dir.FullName, mode | UnixFileMode.OtherExecute);
                }
            }
        }

        var socketPath = Path.Combine(SocketDirectory, $".s.PGSQL.{SocketPort}");
        if (Encoding.UTF8.GetByteCount(socketPath) >= 107)
        {
            throw new EmbeddedPostgresException(
                $"Data root path too long for a unix socket ({socketPath}); choose a shorter data root.");
        }

        foreach (var dir in new[] { DataDirectory, SocketDirectory })
        {
            if (!Directory.Exists(dir))
            {
                Directory.CreateDirectory(dir, privateDir);
            }

            if (_asServiceUser)
            {
                await ChownAsync(dir, ct).ConfigureAwait(false);
            }
        }
    }

    [SupportedOSPlatform("linux")]
    private async Task InitIfMissingAsync(CancellationToken ct)
    {
        if (File.Exists(Path.Combine(DataDirectory, "global", "pg_control")))
        {
            return;
        }

        if (Directory.EnumerateFileSystemEntries(DataDirectory).Any())
        {
            // Left by an initdb that was killed half-way; initdb refuses a non-empty directory.
            var aside = $"{DataDirectory}.incomplete-{DateTime.UtcNow:yyyyMMddHHmmss}";
            _log?.LogWarning("{DataDirectory} holds an incomplete cluster; moving it to {Aside}", DataDirectory, aside);
            Directory.Move(DataDirectory, aside);
            Directory.CreateDirectory(DataDirectory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            if (_asServiceUser)
            {
                await ChownAsync(DataDirectory, ct).ConfigureAwait(false);
            }
        }

        _log?.LogInformation("Creating PostgreSQL cluster in {DataDirectory}", DataDirectory);
        var result = await RunPgAsync(
            "initdb",
            ["-D", DataDirectory, "-U", ServiceUser, "--auth=trust", "-E", "UTF8", "--no-locale"],
            ct).ConfigureAwait(false);
        if (result.ExitCode != 0)
        {
            throw new EmbeddedPostgresException(
                $"initdb failed (exit {result.ExitCode}) for {DataDirectory}:\n{result.Output}");
        }
    }

    /// <summary>
    /// Deals with a <c>postmaster.pid</c> left behind. Returns true when a live postmaster for this
    /// data directory owns it (we adopt it). Otherwise waits for orphaned backends of a killed
    /// postmaster to go (they still hold the shared memory; starting a second set over them would
    /// corrupt the cluster), then removes the stale lock files: PostgreSQL itself would refuse them
    /// when the recorded PID has been reused by an unrelated process.
    /// </summary>
    private async Task<bool> RecoverStaleStateAsync(string realDataDirectory, CancellationToken ct)
    {
        var pidFile = Path.Combine(DataDirectory, "postmaster.pid");
        if (!File.Exists(pidFile))
        {
            return false;
        }

        var pid = ReadPid(pidFile);
        if (pid is int p && ProcessCwd(p) == realDataDirectory)
        {
            return true;
        }

        _log?.LogWarning("Stale postmaster.pid (pid {Pid} is gone) in {DataDirectory}; recovering", pid, DataDirectory);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            var orphans = ProcessesWithCwd(realDataDirectory);
            if (orphans.Count == 0)
            {
                break;
            }

            if (DateTime.UtcNow >= deadline)
            {
                _log?.LogWarning("Killing {Count} orphaned PostgreSQL processes: {Pids}", orphans.Count, string.Join(' ', orphans));
                foreach (var orphan in orphans)
                {
                    try
                    {
                        using var proc = Process.GetProcessById(orphan);
                        proc.Kill();
                    }
                    catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
                    {
                        // Already gone.
                    }
                }

                deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
            }

            await Task.Delay(100, ct).ConfigureAwait(false);
        }

        File.Delete(pidFile);
        File.Delete(Path.Combine(SocketDirectory, $".s.PGSQL.{SocketPort}.lock"));
        File.Delete(Path.Combine(SocketDirectory, $".s.PGSQL.{SocketPort}"));
        return false;
    }

    private async Task StartServerAsync(CancellationToken ct)
    {
        // pg_ctl hands -o to /bin/sh, so quote for the shell.
        var options = string.Join(' ',
            "-p", SocketPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "-k", ShellQuote(SocketDirectory),
            "-c", "listen_addresses=''",
            "-c", "max_connections=200");
        var args = new[]
        {
            "-D", DataDirectory, "-l", LogFile, "-w", "-t", ((int)StartTimeout.TotalSeconds).ToString(System.Globalization.CultureInfo.InvariantCulture),
            "-o", options, "start",
        };

        _log?.LogInformation("Starting PostgreSQL ({DataDirectory}, socket {SocketDirectory})", DataDirectory, SocketDirectory);
        ProcessResult result;
        try
        {
            result = await RunPgAsync("pg_ctl", args, ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // The postmaster may come up after pg_ctl is gone: do not leave it behind.
            await RunPgAsync("pg_ctl", ["-D", DataDirectory, "-m", "immediate", "stop"], CancellationToken.None).ConfigureAwait(false);
            throw;
        }

        if (result.ExitCode != 0)
        {
            throw new EmbeddedPostgresException(
                $"pg_ctl start failed (exit {result.ExitCode}) for {DataDirectory}:\n{result.Output}\n{LogTail()}");
        }
    }

    private string LogTail(int lines = 40)
    {
        try
        {
            if (!File.Exists(LogFile))
            {
                return $"(no log at {LogFile})";
            }

            var all = File.ReadAllLines(LogFile);
            return $"--- last lines of {LogFile} ---\n" + string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
        }
        catch (IOException e)
        {
            return $"(could not read {LogFile}: {e.Message})";
        }
    }

    private Task<ProcessResult> RunPgAsync(string tool, IReadOnlyList<string> args, CancellationToken ct) =>
        _asServiceUser
            ? RunAsync("runuser", ["-u", ServiceUser, "--", Path.Combine(_binDir, tool), .. args], DataRoot, ct)
            : RunAsync(Path.Combine(_binDir, tool), args, DataRoot, ct);

    private async Task ChownAsync(string path, CancellationToken ct)
    {
        var result = await RunAsync("chown", [$"{ServiceUser}:{ServiceUser}", path], DataRoot, ct).ConfigureAwait(false);
        if (result.ExitCode != 0)
        {
            throw new EmbeddedPostgresException($"chown {ServiceUser} {path} failed: {result.Output}");
        }
    }

    private static async Task EnsureServiceUserExistsAsync(CancellationToken ct)
    {
        var result = await RunAsync("id", ["-u", ServiceUser], "/", ct).ConfigureAwait(false);
        if (result.ExitCode != 0)
        {
            throw new EmbeddedPostgresException(
                $"Running as root, but there is no '{ServiceUser}' user to run PostgreSQL as (install the 'postgresql' package: scripts/install-deps.sh).");
        }
    }

    private static async Task<ProcessResult> RunAsync(string file, IReadOnlyList<string> args, string workingDirectory, CancellationToken ct)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory,
        };
        foreach (var arg in args)
        {
            psi.ArgumentList.Add(arg);
        }

        psi.Environment["LC_ALL"] = "C";
        using var process = Process.Start(psi) ?? throw new EmbeddedPostgresException($"Could not start {file}");
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
        var stderr = process.StandardError.ReadToEndAsync(CancellationToken.None);
        try
        {
            await process.WaitForExitAsync(ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            try
            {
                process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // Exited meanwhile.
            }

            throw;
        }

        var output = ((await stdout.ConfigureAwait(false)) + (await stderr.ConfigureAwait(false))).Trim();
        return new ProcessResult(process.ExitCode, output);
    }

    private static bool IsTransientStartup(Exception e) => e switch
    {
        PostgresException pe => pe.SqlState is PostgresErrorCodes.CannotConnectNow,
        NpgsqlException { InnerException: System.Net.Sockets.SocketException } => true,
        System.Net.Sockets.SocketException => true,
        _ => false,
    };

    private static int? ReadPid(string pidFile)
    {
        try
        {
            using var reader = new StreamReader(pidFile);
            return int.TryParse(reader.ReadLine(), out var pid) ? pid : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    private static string? ProcessCwd(int pid)
    {
        try
        {
            return new FileInfo($"/proc/{pid}/cwd").LinkTarget;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static List<int> ProcessesWithCwd(string directory)
    {
        var pids = new List<int>();
        foreach (var entry in Directory.EnumerateDirectories("/proc"))
        {
            if (int.TryParse(Path.GetFileName(entry), out var pid) && pid != Environment.ProcessId && ProcessCwd(pid) == directory)
            {
                pids.Add(pid);
            }
        }

        return pids;
    }

    private static string ShellQuote(string s) => "'" + s.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    private static bool IsRoot() => geteuid() == 0;

    private static string RealPath(string path)
    {
        var resolved = realpath(path, IntPtr.Zero);
        if (resolved == IntPtr.Zero)
        {
            return path;
        }

        try
        {
            return Marshal.PtrToStringUTF8(resolved) ?? path;
        }
        finally
        {
            free(resolved);
        }
    }

#pragma warning disable SYSLIB1054 // plain libc calls; no marshalling worth a source generator
    [DllImport("libc")]
    private static extern uint geteuid();

    [DllImport("libc", CharSet = CharSet.Ansi, BestFitMapping = false, ThrowOnUnmappableChar = true)]
    private static extern IntPtr realpath(string path, IntPtr resolved);

    [DllImport("libc")]
    private static extern void free(IntPtr ptr);
#pragma warning restore SYSLIB1054

    [GeneratedRegex("^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
    private static partial Regex DatabaseName();

    private readonly record struct ProcessResult(int ExitCode, string Output);
}

public sealed class EmbeddedPostgresException : Exception
{
    public EmbeddedPostgresException(string message) : base(message) { }

    public EmbeddedPostgresException(string message, Exception inner) : base(message, inner) { }
}
