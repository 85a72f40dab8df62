using System.Net.Sockets;
using Flotilla.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Flotilla.Tests.MultiHost;

/// <summary>The harness itself: a crash kills every process of a host, a partition cuts it off, teardown leaves nothing.</summary>
[Collection(MultiHostCollection.Name)]
public sealed class NetnsClusterSpec(ITestOutputHelper output)
{
    [SkippableFact]
    public async Task Kill_partition_restart_and_teardown_of_a_one_host_cluster_leave_nothing_behind()
    {
        var unavailable = NetnsCluster.UnavailableReason();
        Skip.If(unavailable is not null, unavailable);
        var cluster = await NetnsCluster.StartAsync(new NetnsClusterOptions { Hosts = 1, Gateway = false, Trace = output.WriteLine });
        var id = cluster.Id;
        var containerId = "";
        try
        {
            var host = cluster.Host(1);
            Assert.True(await ReachableAsync(host.ApiEndpoint), "the host's Docker API answers over the bridge");
            var ping = await host.ExecAsync("cat", "/proc/1/cmdline");
            Assert.Contains("flotilla.dll", ping.Stdout); // PID 1 of the host is its flotilla node, with its own /proc

            // A container through the host's own Docker API really runs inside the host (runc's view from in there).
            var tar = Path.Combine(cluster.Root, "busybox.tar");
            await File.WriteAllBytesAsync(tar, BusyboxImage.Rootfs());
            var import = await cluster.NodeDockerAsync(1, "import", "-c", "CMD [\"/bin/sh\"]", tar, "flt-test/busybox:1");
            Assert.True(import.ExitCode == 0, import.ToString());
            var run = await cluster.NodeDockerAsync(1, "run", "-d", "flt-test/busybox:1", "sleep", "600");
            Assert.True(run.ExitCode == 0, run.ToString());
            containerId = run.Stdout.Trim();
            Assert.Contains(containerId, await host.RunningContainerIdsAsync());

            await cluster.PartitionAsync(1);
            Assert.False(await ReachableAsync(host.ApiEndpoint), "a partitioned host is unreachable");
            await cluster.HealAsync(1);
            Assert.True(await ReachableAsync(host.ApiEndpoint), "a healed host is reachable again");

            await cluster.KillHostAsync(1);
            Assert.False(host.IsRunning);
            var pids = await Command.RunAsync("ip", ["netns", "pids", host.Namespace], CancellationToken.None);
            Assert.Equal("", pids.Stdout.Trim());

            await cluster.RestartHostAsync(1);
            Assert.True(await ReachableAsync(host.ApiEndpoint), "the restarted host answers");
        }
        catch
        {
            output.WriteLine(cluster.Logs());
            throw;
        }
        finally
        {
            await cluster.DisposeAsync();
        }
        Assert.Empty(await NetnsCluster.LeftoversAsync(id));
        // The container died with its host; the cgroups runc made for it went with the teardown.
        Assert.DoesNotContain(Directory.EnumerateDirectories("/sys/fs/cgroup").Select(c => Path.Combine(c, "flotilla", containerId)), Directory.Exists);
    }

    private static async Task<bool> ReachableAsync(string endpoint)
    {
        var (address, port) = (endpoint.Split(':')[0], int.Parse(endpoint.Split(':')[1], System.Globalization.CultureInfo.InvariantCulture));
        using var client = new TcpClient();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        try
        {
            await client.ConnectAsync(address, port, timeout.Token);
            return true;
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            return false;
        }
    }
}
