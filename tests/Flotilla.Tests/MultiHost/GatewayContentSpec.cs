using System.Diagnostics;
using Flotilla.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Flotilla.Tests.MultiHost;

/// <summary>
/// Two hosts and a gateway on a machine of its own, started with the README's cluster flags verbatim (its Docker API on
/// 127.0.0.1:2375 of its own network namespace: no node can reach that address).
/// </summary>
public sealed class GatewayMachineCluster : IAsyncLifetime
{
    private readonly List<string> _trace = [];
    public NetnsCluster? Cluster { get; private set; }
    public string? Unavailable { get; } = NetnsCluster.UnavailableReason();
    public string? StartFailure { get; private set; }

    public async Task InitializeAsync()
    {
        if (Unavailable is not null) return;
        try
        {
            Cluster = await NetnsCluster.StartAsync(new NetnsClusterOptions
            {
                Hosts = 2,
                GatewayOwnNamespace = true,
                Trace = line => { lock (_trace) _trace.Add(line); },
                KeepLogsIn = Environment.GetEnvironmentVariable("FLOTILLA_MULTIHOST_LOGS") is { Length: > 0 } logs ? logs : null,
            });
        }
        catch (Exception e)
        {
            StartFailure = $"{e.Message}\n{string.Join('\n', _trace)}";
        }
    }

    public IReadOnlyList<string> TakeTrace()
    {
        lock (_trace)
        {
            var lines = _trace.ToList();
            _trace.Clear();
            return lines;
        }
    }

    public NetnsCluster Require()
    {
        Skip.If(Unavailable is not null, Unavailable);
        Assert.True(Cluster is not null, "cluster did not start: " + StartFailure);
        return Cluster!;
    }

    public async Task DisposeAsync()
    {
        if (Cluster is null) return;
        await Cluster.DisposeAsync();
        if (Cluster.Leftovers.Count > 0) throw new InvalidOperationException("the cluster left: " + string.Join("; ", Cluster.Leftovers));
    }
}

/// <summary>
/// Issue 15 item 2: where an image lives in a cluster must not depend on the address the gateway's Docker API listens
/// on. Images imported, loaded or committed through a gateway whose Docker API is on loopback run on every node.
/// </summary>
[Collection(MultiHostCollection.Name)]
public sealed class GatewayContentSpec(GatewayMachineCluster fixture, ITestOutputHelper output) : IClassFixture<GatewayMachineCluster>
{
    [SkippableFact]
    public async Task Images_imported_loaded_and_committed_through_a_loopback_gateway_run_on_every_node()
    {
        var cluster = fixture.Require();
        foreach (var line in fixture.TakeTrace()) output.WriteLine(line);
        var clock = Stopwatch.StartNew();
        try
        {
            await AllListedAsync(cluster);

            // docker import through the gateway, then run on one node and on the other.
            var rootfs = Path.Combine(cluster.Root, "gwc-imported.tar");
            NetnsCluster.WriteBusyboxRootfs(rootfs, new Dictionary<string, string> { ["etc/flavor"] = "imported\n" });
            await Ok(cluster, "import", "-c", "CMD [\"/bin/sh\"]", rootfs, "t/imported:1");
            output.WriteLine("imported: " + (await Ok(cluster, "image", "inspect", "-f", "{{.Id}} {{json .Nodes}}", "t/imported:1")).Stdout.Trim());
            await RunsOnAsync(cluster, "t/imported:1", "h1", "imported");
            await RunsOnAsync(cluster, "t/imported:1", "h2", "imported");

            // docker load through the gateway: an image no node has seen (saved, removed, loaded again).
            var other = Path.Combine(cluster.Root, "gwc-loaded-rootfs.tar");
            NetnsCluster.WriteBusyboxRootfs(other, new Dictionary<string, string> { ["etc/flavor"] = "loaded\n" });
            await Ok(cluster, "import", "-c", "CMD [\"/bin/sh\"]", other, "t/loaded:1");
            var archive = Path.Combine(cluster.Root, "gwc-loaded-image.tar");
            await Ok(cluster, "save", "-o", archive, "t/loaded:1");
            await Ok(cluster, "rmi", "t/loaded:1");
            Assert.NotEqual(0, (await cluster.DockerAsync("image", "inspect", "t/loaded:1")).ExitCode);
            await Ok(cluster, "load", "-i", archive);
            await RunsOnAsync(cluster, "t/loaded:1", "h2", "loaded");
            await RunsOnAsync(cluster, "t/loaded:1", "h1", "loaded");

            // docker commit (on the container's node), then the committed image on the other node.
            await Ok(cluster, "run", "-d", "--name", "gwc-commit", "-e", "constraint:node==h1", "t/imported:1",
                "sh", "-c", "echo committed > /etc/mark; exec sleep 600");
            try
            {
                Assert.True(await Eventually.TrueAsync(async () =>
                    (await cluster.DockerAsync("exec", "gwc-commit", "cat", "/etc/mark")).Stdout.Trim() == "committed", TimeSpan.FromSeconds(30)),
                    "the container did not write /etc/mark");
                await Ok(cluster, "commit", "gwc-commit", "t/committed:1");
                var committed = await cluster.DockerAsync("run", "--rm", "-e", "constraint:node==h2", "t/committed:1", "cat", "/etc/mark");
                Assert.True(committed.ExitCode == 0 && committed.Stdout.Trim() == "committed", $"docker run of the commit on h2: {committed}");
            }
            finally
            {
                await cluster.DockerAsync("rm", "-f", "gwc-commit");
            }
            output.WriteLine($"spec took {clock.Elapsed.TotalSeconds:F1} s");
        }
        catch (Exception e) when (e is not SkipException)
        {
            output.WriteLine(cluster.Logs());
            throw;
        }
    }

    /// <summary>The docker CLI in the gateway's namespace reaches the README's gateway on its own 127.0.0.1:2375, which lists both nodes ready.</summary>
    private static async Task AllListedAsync(NetnsCluster cluster)
    {
        CommandResult? info = null;
        var ready = await Eventually.TrueAsync(async () =>
        {
            info = await cluster.DockerAsync("info", "--format", "{{.ID}} {{json .Labels}}");
            return info.ExitCode == 0 && info.Stdout.StartsWith("gateway-vm ", StringComparison.Ordinal) &&
                cluster.Hosts.All(h => info.Stdout.Contains($"flotilla.node.{h.Name}=ready", StringComparison.OrdinalIgnoreCase));
        }, TimeSpan.FromSeconds(60));
        Assert.True(ready, $"docker info: {info}");
    }

    /// <summary><c>docker run --rm</c> pinned to <paramref name="node"/>: the image's content reaches that node and runs there.</summary>
    private async Task RunsOnAsync(NetnsCluster cluster, string image, string node, string flavor)
    {
        var run = await cluster.DockerAsync("run", "--rm", "-e", $"constraint:node=={node}", image, "cat", "/etc/flavor");
        output.WriteLine($"run {image} on {node}: exit {run.ExitCode} {run.Stdout.Trim()} {run.Stderr.Trim()}");
        Assert.True(run.ExitCode == 0, $"docker run {image} on {node}: {run}");
        Assert.Equal(flavor, run.Stdout.Trim());
    }

    private static async Task<CommandResult> Ok(NetnsCluster cluster, params string[] args)
    {
        var result = await cluster.DockerAsync(args);
        Assert.True(result.ExitCode == 0, $"docker {string.Join(' ', args)}: {result}");
        return result;
    }
}
