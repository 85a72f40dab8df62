using System.Text.Json;
using System.Text.Json.Nodes;

namespace Flotilla.Gateway.DockerApi;

/// <summary>What Flotilla does with one field of a create request.</summary>
public enum OptionSupport
{
    /// <summary>Read by <see cref="ContainerCreateRequest"/> and applied to the container.</summary>
    Implemented,

    /// <summary>Not implemented: refused by name when it carries anything but its zero value.</summary>
    RefusedWhenSet,

    /// <summary>Has no effect on a Linux container under dockerd either (client-side or Windows/macOS-only); accepted and dropped.</summary>
    Meaningless,
}

/// <summary>One known field: what Flotilla does with it, the CLI flag a user would recognise, and values that mean "not set".</summary>
public sealed record CreateOption(OptionSupport Support, string? Flag = null, params string[] DefaultValues)
{
    /// <summary>Only null means "not set": an empty list is a value (<c>MaskedPaths: []</c> unmasks everything).</summary>
    public bool OnlyNullIsUnset { get; init; }
}

/// <summary>
/// Every field of <c>POST /containers/create</c> that Flotilla knows (Engine API 1.51: Config at the top,
/// <c>HostConfig</c>, <c>NetworkingConfig</c>), and the refusal of what it does not implement. Clients send a zero
/// value for every field they know (the docker CLI sends all of <c>HostConfig</c>), so a field is refused only when it
/// carries something: not null, false, 0, "", [] or {} (or a listed default such as <c>MemorySwappiness: -1</c>).
/// A field missing from the table is refused the same way, so an option added to the API later is never stored and
/// ignored.
/// </summary>
public static class CreateOptionTable
{
    private static readonly CreateOption Impl = new(OptionSupport.Implemented);
    private static CreateOption Refused(string? flag = null, params string[] defaults) => new(OptionSupport.RefusedWhenSet, flag, defaults);
    private static readonly CreateOption Meaningless = new(OptionSupport.Meaningless);

    public static readonly IReadOnlyDictionary<string, CreateOption> Config = new Dictionary<string, CreateOption>
    {
        ["Hostname"] = Impl,
        ["Domainname"] = Refused("--domainname"),
        ["User"] = Impl,
        ["AttachStdin"] = Impl,
        ["AttachStdout"] = Impl,
        ["AttachStderr"] = Impl,
        // Metadata, as dockerd keeps it; publishing is PortBindings/PublishAllPorts.
        ["ExposedPorts"] = Impl,
        ["Tty"] = Impl,
        ["OpenStdin"] = Impl,
        ["StdinOnce"] = Impl,
        ["Env"] = Impl,
        ["Cmd"] = Impl,
        // Parsed by the healthcheck work (a parallel branch), called from ContainerCreateRequest.Build.
        ["Healthcheck"] = Impl,
        // Windows only.
        ["ArgsEscaped"] = Meaningless,
        // dockerode copies the ?name= query parameter into the body; the query names the container, as in dockerd.
        ["name"] = Meaningless,
        ["Image"] = Impl,
        ["Volumes"] = Impl,
        ["WorkingDir"] = Impl,
        ["Entrypoint"] = Impl,
        ["NetworkDisabled"] = Refused(),
        ["MacAddress"] = Refused("--mac-address"),
        ["OnBuild"] = Refused(),
        ["Labels"] = Impl,
        ["StopSignal"] = Impl,
        ["StopTimeout"] = Impl,
        // The shell of a CMD-SHELL healthcheck (and of a Dockerfile's RUN/CMD in a build).
        ["Shell"] = Impl,
        ["HostConfig"] = Impl,
        ["NetworkingConfig"] = Impl,
    };

    public static readonly IReadOnlyDictionary<string, CreateOption> HostConfig = new Dictionary<string, CreateOption>
    {
        ["Binds"] = Impl,
        // The CLI writes that file itself (--cidfile).
        ["ContainerIDFile"] = Meaningless,
        ["LogConfig"] = Impl,
        ["NetworkMode"] = Impl,
        ["PortBindings"] = Refused("-p/--publish"),
        ["RestartPolicy"] = Impl,
        ["AutoRemove"] = Impl,
        ["VolumeDriver"] = Refused("--volume-driver", "local"),
        ["VolumesFrom"] = Refused("--volumes-from"),
        ["ConsoleSize"] = Impl,
        ["Annotations"] = Refused("--annotation"),
        ["CapAdd"] = Impl,
        ["CapDrop"] = Impl,
        // Flotilla makes no cgroup namespace: the container is in the host's, which is what "host" asks for.
        ["CgroupnsMode"] = Refused("--cgroupns", "host"),
        ["Dns"] = Impl,
        ["DnsOptions"] = Impl,
        ["DnsSearch"] = Impl,
        ["ExtraHosts"] = Impl,
        ["GroupAdd"] = Refused("--group-add"),
        // Every container has its own IPC namespace, dockerd's default "private".
        ["IpcMode"] = Refused("--ipc", "private"),
        ["Cgroup"] = Refused("--cgroup"),
        ["Links"] = Refused("--link"),
        ["OomScoreAdj"] = Refused("--oom-score-adj"),
        ["PidMode"] = Refused("--pid"),
        ["Privileged"] = Impl,
        ["PublishAllPorts"] = Refused("-P/--publish-all"),
        ["ReadonlyRootfs"] = Impl,
        ["SecurityOpt"] = Impl,
        ["StorageOpt"] = Refused("--storage-opt"),
        ["Tmpfs"] = Impl,
        ["UTSMode"] = Refused("--uts"),
        ["UsernsMode"] = Refused("--userns"),
        ["ShmSize"] = Impl,
        ["Sysctls"] = Refused("--sysctl"),
        ["Runtime"] = Refused("--runtime"),
        ["Isolation"] = Refused("--isolation", "default"),
        ["CpuShares"] = Impl,
        ["Memory"] = Impl,
        ["NanoCpus"] = Impl,
        ["CgroupParent"] = Refused("--cgroup-parent"),
        ["BlkioWeight"] = Refused("--blkio-weight"),
        ["BlkioWeightDevice"] = Refused("--blkio-weight-device"),
        ["BlkioDeviceReadBps"] = Refused("--device-read-bps"),
        ["BlkioDeviceWriteBps"] = Refused("--device-write-bps"),
        ["BlkioDeviceReadIOps"] = Refused("--device-read-iops"),
        ["BlkioDeviceWriteIOps"] = Refused("--device-write-iops"),
        ["CpuPeriod"] = Refused("--cpu-period"),
        ["CpuQuota"] = Refused("--cpu-quota"),
        ["CpuRealtimePeriod"] = Refused("--cpu-rt-period"),
        ["CpuRealtimeRuntime"] = Refused("--cpu-rt-runtime"),
        ["CpusetCpus"] = Refused("--cpuset-cpus"),
        ["CpusetMems"] = Refused("--cpuset-mems"),
        ["Devices"] = Impl,
        ["DeviceCgroupRules"] = Refused("--device-cgroup-rule"),
        ["DeviceRequests"] = Refused("--gpus"),
        ["KernelMemory"] = Refused("--kernel-memory"),
        ["KernelMemoryTCP"] = Refused(),
        ["MemoryReservation"] = Refused("--memory-reservation"),
        ["MemorySwap"] = Refused("--memory-swap"),
        ["MemorySwappiness"] = Refused("--memory-swappiness", "-1"),
        ["OomKillDisable"] = Refused("--oom-kill-disable"),
        ["PidsLimit"] = Impl,
        ["Ulimits"] = Impl,
        ["CpuCount"] = Refused("--cpu-count"),
        ["CpuPercent"] = Refused("--cpu-percent"),
        ["IOMaximumIOps"] = Refused("--io-maxiops"),
        ["IOMaximumBandwidth"] = Refused("--io-maxbandwidth"),
        // null = the defaults; [] (--security-opt systempaths=unconfined) would unmask them all.
        ["MaskedPaths"] = Refused("--security-opt systempaths=unconfined") with { OnlyNullIsUnset = true },
        ["ReadonlyPaths"] = Refused("--security-opt systempaths=unconfined") with { OnlyNullIsUnset = true },
        ["Mounts"] = Impl,
        ["Init"] = Impl,
    };

    /// <summary>The fields of one <c>NetworkingConfig.EndpointsConfig</c> entry; all unimplemented until networking lands.</summary>
    private static readonly string[] EndpointFlags =
    [
        "IPAMConfig (--ip/--ip6)", "Links (--link)", "Aliases (--network-alias)", "MacAddress (--mac-address)", "DriverOpts (--driver-opt)",
        "GwPriority (--gw-priority)", "NetworkID", "EndpointID", "Gateway", "IPAddress (--ip)", "IPPrefixLen", "IPv6Gateway",
        "GlobalIPv6Address (--ip6)", "GlobalIPv6PrefixLen", "DNSNames",
    ];

    /// <summary>
    /// Refuses (400, Docker's shape) the first field that Flotilla does not implement and that carries a value.
    /// <paramref name="networkMode"/> is the container's network: its own endpoint entry may be sent with zero values.
    /// </summary>
    public static void RefuseUnimplemented(JsonObject body, string networkMode)
    {
        Check(body, Config, "");
        if (body["HostConfig"] is JsonObject hostConfig) Check(hostConfig, HostConfig, "HostConfig.");
        if (body["NetworkingConfig"] is not JsonObject networking) return;
        // A network Flotilla does not have: the create is refused as "network X not found" (Build), which says more.
        if (networkMode is not ("" or "default" or "bridge" or "none" or "host")) return;
        foreach (var (name, value) in networking)
        {
            if (name != "EndpointsConfig")
            {
                if (!IsZero(value, [])) throw Unknown("NetworkingConfig." + name);
                continue;
            }
            foreach (var (network, endpoint) in value as JsonObject ?? [])
            {
                var own = network == networkMode || (network is "default" or "bridge" && networkMode is "" or "default" or "bridge");
                if (!own)
                    throw ContainerCreateRequest.Invalid(
                        $"NetworkingConfig.EndpointsConfig.{network} (connecting to more than the container's own network) is not supported by Flotilla yet");
                foreach (var (field, setting) in endpoint as JsonObject ?? [])
                {
                    if (IsZero(setting, [])) continue;
                    var flag = EndpointFlags.FirstOrDefault(f => f == field || f.StartsWith(field + " ", StringComparison.Ordinal)) ?? field;
                    throw ContainerCreateRequest.Invalid($"NetworkingConfig.EndpointsConfig.{network}.{flag} is not supported by Flotilla yet");
                }
            }
        }
    }

    private static void Check(JsonObject fields, IReadOnlyDictionary<string, CreateOption> table, string prefix)
    {
        foreach (var (name, value) in fields)
        {
            if (!table.TryGetValue(name, out var option))
            {
                if (!IsZero(value, [])) throw Unknown(prefix + name);
                continue;
            }
            var unset = option.OnlyNullIsUnset ? value is null || value.GetValueKind() == JsonValueKind.Null : IsZero(value, option.DefaultValues);
            if (option.Support == OptionSupport.RefusedWhenSet && !unset)
                throw ContainerCreateRequest.Invalid(
                    $"{prefix}{name}{(option.Flag is null ? "" : $" ({option.Flag})")} is not supported by Flotilla: refused rather than ignored");
        }
    }

    private static Flotilla.Cluster.OperationRejectedException Unknown(string field) =>
        ContainerCreateRequest.Invalid($"{field} is not a create option Flotilla knows: refused rather than ignored");

    /// <summary>null, false, 0, "", [] and {} (recursively: an object of zero values), or one of the field's own defaults.</summary>
    public static bool IsZero(JsonNode? node, IReadOnlyCollection<string> defaults) => node switch
    {
        null => true,
        JsonArray a => a.Count == 0,
        JsonObject o => o.All(kv => IsZero(kv.Value, [])),
        JsonValue v => v.GetValueKind() switch
        {
            JsonValueKind.False or JsonValueKind.Null => true,
            JsonValueKind.String => v.GetValue<string>() is var s && (s.Length == 0 || defaults.Contains(s)),
            JsonValueKind.Number => v.ToJsonString() is var n && (n is "0" or "0.0" || defaults.Contains(n)),
            _ => false,
        },
        _ => false,
    };
}
