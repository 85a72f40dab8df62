using System.Collections.Concurrent;
using System.Security.Cryptography;
using Flotilla.NodeRuntime.Oci;

namespace Flotilla.Gateway.DockerApi;

/// <summary>What <c>POST /containers/{id}/exec</c> asked for.</summary>
public sealed record ExecConfig(
    IReadOnlyList<string> Cmd,
    string User,
    string WorkingDir,
    IReadOnlyList<string> Env,
    bool Tty,
    bool Privileged,
    bool AttachStdin,
    bool AttachStdout,
    bool AttachStderr,
    string DetachKeys,
    ConsoleSize? ConsoleSize);

/// <summary>One exec instance (Docker keeps them in memory too, and forgets them with the daemon).</summary>
public sealed class ExecInstance(string id, string containerId, ExecConfig config)
{
    private readonly Lock _lock = new();

    public string Id { get; } = id;
    public string ContainerId { get; } = containerId;
    public ExecConfig Config { get; } = config;
    public DateTimeOffset CreatedAt { get; } = DateTimeOffset.UtcNow;

    public bool Started { get; private set; }
    public bool Running { get; private set; }
    public int? ExitCode { get; private set; }
    public int Pid { get; set; }

    /// <summary>The TTY session while it runs, for resize.</summary>
    public ConmonExecSession? Session { get; set; }

    /// <summary>A size asked for before the session existed.</summary>
    public ConsoleSize? PendingSize { get; set; }

    /// <summary>Marks the exec started; false if it already was (an exec runs once).</summary>
    public bool TryStart()
    {
        lock (_lock)
        {
            if (Started) return false;
            Started = Running = true;
            return true;
        }
    }

    public void Finish(int exitCode)
    {
        lock (_lock)
        {
            ExitCode = exitCode;
            Running = false;
            Session = null;
        }
    }
}

/// <summary>Process-wide registry of exec instances (a singleton).</summary>
public sealed class ExecRegistry
{
    private static readonly TimeSpan KeepFinished = TimeSpan.FromMinutes(10);
    private readonly ConcurrentDictionary<string, ExecInstance> _execs = new();

    public ExecInstance Create(string containerId, ExecConfig config)
    {
        Prune();
        var id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        var exec = new ExecInstance(id, containerId, config);
        _execs[id] = exec;
        return exec;
    }

    public ExecInstance? Find(string id)
    {
        if (_execs.TryGetValue(id, out var exact)) return exact;
        // Docker accepts a unique prefix as well.
        var matches = id.Length >= 3 ? _execs.Values.Where(e => e.Id.StartsWith(id, StringComparison.Ordinal)).Take(2).ToList() : [];
        return matches.Count == 1 ? matches[0] : null;
    }

    public IReadOnlyList<ExecInstance> OfContainer(string containerId) =>
        _execs.Values.Where(e => e.ContainerId == containerId).ToList();

    /// <summary>Finished execs are kept a while for inspect, then forgotten; never-started ones likewise.</summary>
    private void Prune()
    {
        var cutoff = DateTimeOffset.UtcNow - KeepFinished;
        foreach (var (id, exec) in _execs)
            if (!exec.Running && exec.CreatedAt < cutoff)
                _execs.TryRemove(id, out _);
    }
}
