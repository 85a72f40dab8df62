using System.Diagnostics;

namespace Flotilla.Bench.Common;

public sealed record ProcResult(int ExitCode, string Stdout, string Stderr);

/// <summary>Runs a command to completion (5 minutes at most), capturing its output.</summary>
public static class Proc
{
    public static async Task<ProcResult> RunAsync(string file, IReadOnlyList<string> args, IReadOnlyDictionary<string, string>? env,
        CancellationToken ct, string? workingDirectory = null)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (workingDirectory is not null) psi.WorkingDirectory = workingDirectory;
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        using var process = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {file}");
        var stdout = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
        var stderr = process.StandardError.ReadToEndAsync(CancellationToken.None);
        try
        {
            await process.WaitForExitAsync(ct).WaitAsync(TimeSpan.FromMinutes(5), ct);
        }
        catch
        {
            try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            throw;
        }
        return new ProcResult(process.ExitCode, await stdout, await stderr);
    }
}

public static class Cleanup
{
    /// <summary>Unmounts whatever is still mounted under <paramref name="dir"/> (podman's overlays, say), then deletes it.</summary>
    public static void Remove(string dir)
    {
        try
        {
            var full = Path.GetFullPath(dir);
            var mounts = File.ReadAllLines("/proc/self/mountinfo").Select(l => l.Split(' ')[4])
                .Where(m => m == full || m.StartsWith(full + "/", StringComparison.Ordinal)).Reverse().ToList();
            foreach (var m in mounts) umount2(m, 2 /* MNT_DETACH */);
            if (Directory.Exists(full)) Directory.Delete(full, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"cleanup of {dir}: {e.Message}");
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
#pragma warning disable SYSLIB1054
    private static extern int umount2(string target, int flags);
#pragma warning restore SYSLIB1054
}
