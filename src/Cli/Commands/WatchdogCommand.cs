using System.CommandLine;
using Flotilla.NodeRuntime.Fencing;

namespace Flotilla.Cli.Commands;

/// <summary>
/// <c>flotilla watchdog</c>: started by <c>flotilla node</c> (detached, one per data dir) to kill the host's containers
/// when the engine stops confirming its lease. Not for direct use; listed so an operator can see what the process is.
/// </summary>
public static class WatchdogCommand
{
    public static Command Create()
    {
        var data = Flags.WithEnv("--data", "FLOTILLA_DATA", "/var/lib/flotilla", "the node's data directory");
        var cgroupParent = Flags.WithEnv("--cgroup-parent", "FLOTILLA_CGROUP_PARENT", Flotilla.NodeRuntime.Oci.CgroupParents.Default,
            "the cgroup the node's containers run under");
        var command = new Command("watchdog", "The host watchdog a node starts: kills the host's containers when its lease is not confirmed in time")
        {
            data, cgroupParent,
        };
        command.Hidden = true;
        command.SetAction(async (result, cancellationToken) =>
        {
            string parent;
            try
            {
                parent = Flotilla.NodeRuntime.Oci.CgroupParents.Validate(result.GetValue(cgroupParent)!);
            }
            catch (ArgumentException ex)
            {
                await Console.Error.WriteLineAsync("flotilla watchdog: " + ex.Message);
                return 2;
            }
            var watchdog = new HostWatchdog(WatchdogPaths.Of(result.GetValue(data)!), new CgroupFence(parent),
                message => Console.WriteLine($"{DateTimeOffset.UtcNow:O} {message}"));
            return await watchdog.RunAsync(cancellationToken);
        });
        return command;
    }
}
