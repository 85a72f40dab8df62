using System.Runtime.InteropServices;
using Flotilla.Cluster.Nodes;
using Flotilla.Cluster.Queries;
using Flotilla.Gateway.Http;
using Flotilla.NodeRuntime.Host;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Flotilla.Gateway.DockerApi;

/// <summary><c>/_ping</c>, <c>/version</c> and <c>/info</c>: what every Docker client asks first.</summary>
public static class SystemEndpoints
{
    public static void MapSystemEndpoints(this IEndpointRouteBuilder app, GatewayInfo info, ClusterQueries queries)
    {
        app.MapMethods("/_ping", [HttpMethods.Get, HttpMethods.Head], async context =>
        {
            var headers = context.Response.Headers;
            headers.CacheControl = "no-cache, no-store, must-revalidate";
            headers.Pragma = "no-cache";
            headers["Builder-Version"] = "1";
            headers["Swarm"] = "inactive";
            context.Response.ContentType = "text/plain; charset=utf-8";
            if (HttpMethods.IsHead(context.Request.Method))
            {
                context.Response.ContentLength = 0;
                return;
            }
            context.Response.ContentLength = 2;
            await context.Response.WriteAsync("OK", context.RequestAborted);
        });

        app.MapGet("/version", context => JsonReply.WriteAsync(context, Version(info)));

        app.MapGet("/info", async context =>
        {
            var nodes = await queries.NodesAsync(context.RequestAborted);
            var containers = await queries.ContainerCountsAsync(context.RequestAborted);
            var images = await queries.ImageCountAsync(context.RequestAborted);
            var registries = context.RequestServices.GetRequiredService<NodeRuntime.Distribution.ImageDistribution>().Client.Options.InsecureRegistries;
            await JsonReply.WriteAsync(context, Info(info, nodes, containers, images, registries));
        });
    }

    private static string Arch => RuntimeInformation.OSArchitecture switch
    {
        Architecture.X64 => "amd64",
        Architecture.Arm64 => "arm64",
        var a => a.ToString().ToLowerInvariant(),
    };

    private static string UnameArch => RuntimeInformation.OSArchitecture switch
    {
        Architecture.X64 => "x86_64",
        Architecture.Arm64 => "aarch64",
        var a => a.ToString().ToLowerInvariant(),
    };

    public static object Version(GatewayInfo info) => new
    {
        Platform = new { Name = "Flotilla" },
        Components = new object[]
        {
            new
            {
                Name = "Engine",
                Version = info.ServerVersion,
                Details = new Dictionary<string, string>
                {
                    ["ApiVersion"] = ApiVersion.Max.ToString(),
                    ["MinAPIVersion"] = ApiVersion.Min.ToString(),
                    ["Arch"] = Arch,
                    ["Os"] = "linux",
                    ["KernelVersion"] = info.Host.Kernel,
                    ["Experimental"] = "false",
                    ["GoVersion"] = RuntimeInformation.FrameworkDescription,
                    ["GitCommit"] = "",
                    ["BuildTime"] = "",
                },
            },
            new
            {
                Name = "OCI runtime",
                Version = info.Host.OciRuntime,
                Details = new Dictionary<string, string> { ["Cgroups"] = info.Host.Cgroups.ToString() },
            },
        },
        Version = info.ServerVersion,
        ApiVersion = ApiVersion.Max.ToString(),
        MinAPIVersion = ApiVersion.Min.ToString(),
        GitCommit = "",
        GoVersion = RuntimeInformation.FrameworkDescription,
        Os = "linux",
        Arch,
        KernelVersion = info.Host.Kernel,
        Experimental = false,
        BuildTime = "",
    };

    public static object Info(GatewayInfo info, IReadOnlyList<NodeView> nodes, ContainerCounts containers, int images,
        NodeRuntime.Distribution.InsecureRegistries registries)
    {
        var ready = nodes.Where(n => n.Status == NodeStatus.Ready).ToList();
        var runtimeName = info.Host.OciRuntime.Split(' ')[0];
        return new
        {
            ID = info.NodeName,
            Containers = containers.Total,
            ContainersRunning = containers.Running,
            ContainersPaused = containers.Paused,
            ContainersStopped = containers.Stopped,
            Images = images,
            Driver = "overlay2",
            DriverStatus = new[]
            {
                new[] { "Backing Filesystem", "overlayfs" },
                new[] { "Supports d_type", "true" },
                new[] { "Using metacopy", "false" },
                new[] { "Native Overlay Diff", "true" },
            },
            Plugins = new
            {
                Volume = new[] { "local" },
                Network = new[] { "bridge", "host", "none" },
                Authorization = (string[]?)null,
                Log = new[] { "json-file" },
            },
            MemoryLimit = true,
            SwapLimit = false,
            CpuCfsPeriod = true,
            CpuCfsQuota = true,
            CPUShares = true,
            CPUSet = true,
            PidsLimit = true,
            IPv4Forwarding = true,
            Debug = false,
            NFd = 0,
            OomKillDisable = false,
            NGoroutines = 0,
            SystemTime = DateTimeOffset.Now.ToString("O"),
            LoggingDriver = "json-file",
            CgroupDriver = "cgroupfs",
            CgroupVersion = info.Host.Cgroups.DockerName(),
            NEventsListener = 0,
            KernelVersion = info.Host.Kernel,
            OperatingSystem = OperatingSystemName(),
            OSVersion = "",
            OSType = "linux",
            Architecture = UnameArch,
            IndexServerAddress = "https://index.docker.io/v1/",
            RegistryConfig = registries.Describe(),
            // The cluster's capacity: every ready node's CPUs and memory.
            NCPU = ready.Count == 0 ? info.Host.Cpus : ready.Sum(n => n.Cpus),
            MemTotal = ready.Count == 0 ? info.Host.MemoryBytes : ready.Sum(n => n.MemoryBytes),
            GenericResources = (object?)null,
            DockerRootDir = info.DataRoot,
            HttpProxy = "",
            HttpsProxy = "",
            NoProxy = "",
            Name = info.Host.Hostname,
            Labels = nodes.Select(n => $"flotilla.node.{n.Name}={n.Status}").ToArray(),
            ExperimentalBuild = false,
            ServerVersion = info.ServerVersion,
            Runtimes = new Dictionary<string, object> { [runtimeName] = new { path = runtimeName } },
            DefaultRuntime = runtimeName,
            Swarm = new
            {
                NodeID = "",
                NodeAddr = "",
                LocalNodeState = "inactive",
                ControlAvailable = false,
                Error = "",
                RemoteManagers = (object?)null,
            },
            LiveRestoreEnabled = true,
            Isolation = "",
            InitBinary = "",
            ContainerdCommit = new { ID = "" },
            RuncCommit = new { ID = info.Host.OciRuntime },
            InitCommit = new { ID = "" },
            SecurityOptions = new[] { "name=seccomp,profile=builtin" },
            Warnings = Array.Empty<string>(),
            // Flotilla's own addition: the nodes behind this endpoint.
            Nodes = nodes.Select(n => new { n.Name, n.Status, n.Cpus, n.MemoryBytes, n.OciRuntime, n.Address }).ToArray(),
        };
    }

    private static string OperatingSystemName()
    {
        try
        {
            foreach (var line in File.ReadLines("/etc/os-release"))
                if (line.StartsWith("PRETTY_NAME=", StringComparison.Ordinal))
                    return line["PRETTY_NAME=".Length..].Trim('"');
        }
        catch (IOException)
        {
        }
        return RuntimeInformation.OSDescription;
    }
}
