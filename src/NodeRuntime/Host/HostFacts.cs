using System.Diagnostics;

namespace Flotilla.NodeRuntime.Host;

/// <summary>What a host reports about itself when it joins: capacity, kernel, and its OCI runtime.</summary>
public sealed record HostFacts(string Hostname, int Cpus, long MemoryBytes, string Kernel, string OciRuntime, CgroupLayout Cgroups,
    string? OciRuntimePath = null)
{
    public static async Task<HostFacts> ProbeAsync(string? preferredRuntime, CancellationToken cancellationToken = default)
    {
        var cgroups = CgroupLayoutProbe.Detect();
        var runtime = await OciRuntimeSelector.SelectAsync(preferredRuntime, cgroups, cancellationToken);
        return new HostFacts(Environment.MachineName, Environment.ProcessorCount, ReadMemTotal(), ReadKernel(),
            runtime?.ToString() ?? "none", cgroups, runtime?.Path);
    }

    private static long ReadMemTotal()
    {
        // /proc/meminfo: "MemTotal:       24576000 kB"
        foreach (var line in File.ReadLines("/proc/meminfo"))
        {
            if (!line.StartsWith("MemTotal:", StringComparison.Ordinal)) continue;
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return long.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
        }
        return 0;
    }

    private static string ReadKernel() =>
        File.Exists("/proc/sys/kernel/osrelease") ? File.ReadAllText("/proc/sys/kernel/osrelease").Trim() : Environment.OSVersion.VersionString;
}

public enum CgroupLayout { Unknown, V1, Hybrid, V2 }

public static class CgroupLayoutProbe
{
    public static CgroupLayout Detect(string root = "/sys/fs/cgroup")
    {
        if (File.Exists(Path.Combine(root, "cgroup.controllers"))) return CgroupLayout.V2;
        if (!Directory.Exists(root)) return CgroupLayout.Unknown;
        return File.Exists(Path.Combine(root, "unified", "cgroup.controllers")) ? CgroupLayout.Hybrid : CgroupLayout.V1;
    }

    public static string DockerName(this CgroupLayout layout) => layout == CgroupLayout.V2 ? "2" : "1";
}

/// <summary>An OCI runtime binary that answered <c>--version</c>.</summary>
public sealed record OciRuntimeInfo(string Name, string Path, string Version)
{
    public override string ToString() => $"{Name} {Version}";
}

/// <summary>
/// Picks the OCI runtime: the user's choice if it works, else crun where the cgroup layout allows
/// (crun refuses hybrid v1/v2 hosts), else runc.
/// </summary>
public static class OciRuntimeSelector
{
    public static async Task<OciRuntimeInfo?> SelectAsync(string? preferred, CgroupLayout cgroups, CancellationToken cancellationToken)
    {
        if (!string.IsNullOrEmpty(preferred))
            return await ProbeAsync(preferred, cancellationToken)
                ?? throw new InvalidOperationException($"OCI runtime '{preferred}' was asked for but is not installed or does not run");
        string[] order = cgroups == CgroupLayout.Hybrid ? ["runc"] : ["crun", "runc"];
        foreach (var name in order)
            if (await ProbeAsync(name, cancellationToken) is { } info) return info;
        return null;
    }

    public static async Task<OciRuntimeInfo?> ProbeAsync(string name, CancellationToken cancellationToken)
    {
        var path = FindOnPath(name);
        if (path is null) return null;
        try
        {
            using var p = Process.Start(new ProcessStartInfo(path, "--version")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            })!;
            var output = await p.StandardOutput.ReadToEndAsync(cancellationToken);
            await p.WaitForExitAsync(cancellationToken);
            if (p.ExitCode != 0) return null;
            // "runc version 1.1.5" / "crun version 1.8.1"
            var first = output.Split('\n', 2)[0].Trim();
            var version = first.Split(' ', StringSplitOptions.RemoveEmptyEntries).LastOrDefault() ?? "unknown";
            return new OciRuntimeInfo(System.IO.Path.GetFileName(name), path, version);
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }

    private static string? FindOnPath(string name)
    {
        if (name.Contains('/')) return File.Exists(name) ? name : null;
        var dirs = (Environment.GetEnvironmentVariable("PATH") ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").Split(':');
        return dirs.Select(d => System.IO.Path.Combine(d, name)).FirstOrDefault(File.Exists);
    }
}
