namespace Flotilla.Bench.Common;

/// <summary>
/// podman with private storage under a temp root (never the machine's own), on the overlay driver when it works here,
/// else vfs; cgroupfs and file events since there is no systemd.
/// </summary>
public sealed class BenchPodman(string root)
{
    public string Root { get; } = root;
    public string? Driver { get; private set; }

    public Task<ProcResult> RunAsync(CancellationToken ct, params string[] args) =>
        Proc.RunAsync("podman",
            ["--root", Path.Combine(Root, "root"), "--runroot", Path.Combine(Root, "run"),
             .. Driver is null ? Array.Empty<string>() : ["--storage-driver", Driver],
             "--events-backend", "file", "--cgroup-manager", "cgroupfs", "--tmpdir", Path.Combine(Root, "tmp"), .. args],
            new Dictionary<string, string> { ["TMPDIR"] = Path.Combine(Root, "tmp") }, ct);

    public async Task<string> PickDriverAsync(CancellationToken ct)
    {
        Directory.CreateDirectory(Path.Combine(Root, "tmp"));
        foreach (var driver in new[] { "overlay", "vfs" })
        {
            Driver = driver;
            var probe = await RunAsync(ct, "info", "--format", "{{.Store.GraphDriverName}}");
            if (probe.ExitCode == 0 && probe.Stdout.Trim() == driver) return driver;
            Console.WriteLine($"[podman] driver {driver} does not work here: {probe.Stderr.Trim()}");
            Cleanup.Remove(Root);
            Directory.CreateDirectory(Path.Combine(Root, "tmp"));
        }
        throw new InvalidOperationException("podman runs with neither the overlay nor the vfs driver here");
    }
}
