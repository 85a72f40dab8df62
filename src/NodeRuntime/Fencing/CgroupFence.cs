using System.Runtime.InteropServices;

namespace Flotilla.NodeRuntime.Fencing;

/// <summary>
/// Kills every process of every container under one cgroup parent (<c>--cgroup-parent</c>), without asking runc or
/// conmon: freeze the parent (cgroup v1 freezer, hierarchical), SIGKILL every task below it, thaw — frozen tasks
/// cannot fork away meanwhile. On cgroup v2, <c>cgroup.kill</c> of each container's cgroup does the same in the kernel.
/// conmon lives outside the container's cgroup: it sees its child die and records the exit as for any kill.
/// </summary>
public sealed partial class CgroupFence(string cgroupParent, string cgroupRoot = "/sys/fs/cgroup")
{
    private const int SigKill = 9;

    public string CgroupParent { get; } = cgroupParent.TrimEnd('/');

    private string Freezer => Path.Combine(cgroupRoot, "freezer") + CgroupParent;
    private string Unified => cgroupRoot + CgroupParent;

    /// <summary>Kills every container process under the parent; returns the ids (child cgroup names) that had any.</summary>
    public IReadOnlyList<string> KillAll()
    {
        if (Directory.Exists(Freezer)) return KillFrozen(Freezer);
        if (File.Exists(Path.Combine(Unified, "cgroup.procs")) && File.Exists(Path.Combine(cgroupRoot, "cgroup.controllers"))) return KillUnified(Unified);
        // No freezer (an unusual v1 layout): kill what the pids hierarchy lists, a few times over in case of forks.
        var pids = Path.Combine(cgroupRoot, "pids") + CgroupParent;
        var killed = new HashSet<string>();
        for (var round = 0; round < 3 && Directory.Exists(pids); round++)
            foreach (var (id, tasks) in Tasks(pids).Where(t => t.Tasks.Count > 0))
            {
                killed.Add(id);
                foreach (var pid in tasks) _ = kill(pid, SigKill);
            }
        return [.. killed];
    }

    /// <summary>Container cgroups under the parent that hold any process now.</summary>
    public IReadOnlyList<string> Occupied()
    {
        var hierarchy = Directory.Exists(Freezer) ? Freezer : Unified;
        return Directory.Exists(hierarchy) ? [.. Tasks(hierarchy).Where(t => t.Tasks.Count > 0).Select(t => t.Id)] : [];
    }

    private static IReadOnlyList<string> KillFrozen(string parent)
    {
        var state = Path.Combine(parent, "freezer.state");
        Write(state, "FROZEN");
        try
        {
            var until = DateTime.UtcNow + TimeSpan.FromSeconds(1);
            while (Read(state) != "FROZEN" && DateTime.UtcNow < until) Thread.Sleep(5);
            var killed = new List<string>();
            foreach (var (id, tasks) in Tasks(parent))
            {
                if (tasks.Count == 0) continue;
                killed.Add(id);
                foreach (var pid in tasks) _ = kill(pid, SigKill);
            }
            return killed;
        }
        finally
        {
            Write(state, "THAWED"); // the kills are delivered now
        }
    }

    private static IReadOnlyList<string> KillUnified(string parent)
    {
        var killed = new List<string>();
        foreach (var (id, tasks) in Tasks(parent))
        {
            if (tasks.Count == 0) continue;
            killed.Add(id);
            var knob = Path.Combine(parent, id, "cgroup.kill");
            if (File.Exists(knob)) Write(knob, "1");
            else foreach (var pid in tasks) _ = kill(pid, SigKill);
        }
        return killed;
    }

    /// <summary>Each container cgroup directly under the parent with the tasks of it and of everything below it.</summary>
    private static IEnumerable<(string Id, List<int> Tasks)> Tasks(string parent)
    {
        IEnumerable<string> children;
        try
        {
            children = Directory.EnumerateDirectories(parent).ToList();
        }
        catch (DirectoryNotFoundException)
        {
            yield break;
        }
        foreach (var child in children)
        {
            var tasks = new List<int>();
            foreach (var dir in SelfAndBelow(child))
            {
                try
                {
                    foreach (var line in File.ReadLines(Path.Combine(dir, "cgroup.procs")))
                        if (int.TryParse(line, out var pid)) tasks.Add(pid);
                }
                catch (IOException)
                {
                    // Removed meanwhile: nothing there to kill.
                }
            }
            yield return (Path.GetFileName(child), tasks);
        }
    }

    private static IEnumerable<string> SelfAndBelow(string dir)
    {
        yield return dir;
        string[] below;
        try
        {
            below = Directory.GetDirectories(dir, "*", SearchOption.AllDirectories);
        }
        catch (IOException)
        {
            yield break;
        }
        foreach (var d in below) yield return d;
    }

    private static string Read(string path)
    {
        try
        {
            return File.ReadAllText(path).Trim();
        }
        catch (IOException)
        {
            return "";
        }
    }

    private static void Write(string path, string value)
    {
        try
        {
            File.WriteAllText(path, value);
        }
        catch (IOException)
        {
            // The cgroup went away: nothing left in it.
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);
}
