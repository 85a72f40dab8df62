namespace Flotilla.Tests.Support;

/// <summary>Leaves nothing behind: removes every container through the API, then unmounts and deletes a data root.</summary>
public static class DataRootCleanup
{
    /// <param name="tlsFlags">For a node's cluster-only API: <c>--tlsverify --tlscacert … --tlscert … --tlskey …</c>.</param>
    public static async Task RemoveContainersAsync(int dockerPort, params string[] tlsFlags)
    {
        var list = await ProcessRunner.RunAsync("docker", [.. tlsFlags, "-H", $"tcp://127.0.0.1:{dockerPort}", "ps", "-aq", "--no-trunc"], TimeSpan.FromSeconds(30));
        var ids = list.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (ids.Length > 0)
            await ProcessRunner.RunAsync("docker", [.. tlsFlags, "-H", $"tcp://127.0.0.1:{dockerPort}", "rm", "-f", "-v", .. ids], TimeSpan.FromSeconds(60));
    }

    public static async Task DeleteAsync(string dataRoot)
    {
        var root = Path.GetFullPath(dataRoot).TrimEnd('/') + "/";
        var mounts = File.ReadLines("/proc/self/mountinfo").Select(l => l.Split(' ')[4])
            .Where(m => m.StartsWith(root, StringComparison.Ordinal)).OrderByDescending(m => m.Length).ToList();
        foreach (var mount in mounts) await ProcessRunner.RunAsync("umount", ["-l", mount], TimeSpan.FromSeconds(10));
        try
        {
            if (Directory.Exists(dataRoot)) Directory.Delete(dataRoot, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
