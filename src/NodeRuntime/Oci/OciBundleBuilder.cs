using System.Text.Json;
using System.Text.Json.Nodes;

namespace Flotilla.NodeRuntime.Oci;

/// <summary>A process to run inside an existing container (docker exec).</summary>
public sealed record ExecSpec
{
    public required IReadOnlyList<string> Args { get; init; }
    public IReadOnlyList<string> Env { get; init; } = [];

    /// <summary>Empty = the container's user.</summary>
    public string User { get; init; } = "";

    /// <summary>Empty = the container's working directory.</summary>
    public string WorkingDir { get; init; } = "";
    public bool Tty { get; init; }
    public bool Privileged { get; init; }
    public ConsoleSize? ConsoleSize { get; init; }
}

public sealed record OciBundleOptions
{
    /// <summary>containers-common profile to convert; null = no seccomp for any container.</summary>
    public string? SeccompProfilePath { get; init; } = SeccompProfileConverter.DefaultProfilePath;

    /// <summary>Prefix of <c>linux.cgroupsPath</c>: "/flotilla" → "/flotilla/&lt;id&gt;" (<see cref="CgroupParents.Validate"/>).</summary>
    public string CgroupParent { get; init; } = CgroupParents.Default;

    /// <summary>Where the host's resolver config is copied from.</summary>
    public string HostResolvConf { get; init; } = "/etc/resolv.conf";
    public string HostHosts { get; init; } = "/etc/hosts";

    /// <summary>
    /// The init for <c>--init</c> (Debian's <c>tini</c> package): static, so it runs in any image. Bound read-only at
    /// <see cref="OciBundleBuilder.InitPathInContainer"/>, as dockerd binds its docker-init.
    /// </summary>
    public string InitPath { get; init; } = "/usr/bin/tini-static";
}

/// <summary>
/// Writes an OCI bundle for a <see cref="ContainerSpec"/>: <c>config.json</c> with Docker's defaults (moby
/// <c>oci/defaults.go</c> + <c>daemon/oci_linux.go</c>) and the <c>hosts</c>, <c>hostname</c> and
/// <c>resolv.conf</c> files it bind-mounts. The rootfs is referenced by absolute path, never copied.
/// Deliberately no <c>process.rlimits</c>: values above the engine's own limits make runc fail
/// ("error setting rlimit type 7"), and the container inherits the engine's limits anyway.
/// </summary>
public sealed class OciBundleBuilder
{
    public const string DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

    /// <summary>Where <c>--init</c>'s binary appears in the container (dockerd's path).</summary>
    public const string InitPathInContainer = "/sbin/docker-init";

    /// <summary>Docker's /dev/shm size when the container sets none.</summary>
    public const long DefaultShmSize = 64L << 20;

    private static readonly string[] MaskedPaths =
    [
        "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
        "/sys/devices/virtual/powercap",
    ];

    private static readonly string[] ReadonlyPaths = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

    private readonly OciBundleOptions _options;
    private readonly Lazy<string?> _profile;
    private readonly Lazy<IReadOnlyList<string>> _hostCaps = new(Capabilities.Host);
    /// <summary>Converted profiles by capability set: converting costs milliseconds on every start otherwise.</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, JsonNode> _seccompByCaps = new();

    public OciBundleBuilder(OciBundleOptions? options = null)
    {
        _options = options ?? new OciBundleOptions();
        _profile = new Lazy<string?>(() =>
        {
            if (_options.SeccompProfilePath is null) return null;
            if (!File.Exists(_options.SeccompProfilePath))
                throw new FileNotFoundException(
                    $"seccomp profile {_options.SeccompProfilePath} not found (install golang-github-containers-common)",
                    _options.SeccompProfilePath);
            return File.ReadAllText(_options.SeccompProfilePath);
        });
    }

    public string CgroupsPath(string id) => _options.CgroupParent.TrimEnd('/') + "/" + Flotilla.Contracts.Containers.ContainerIds.Validate(id);

    /// <summary>
    /// Writes <c>config.json</c>, <c>hosts</c>, <c>hostname</c> and <c>resolv.conf</c> into
    /// <paramref name="bundleDir"/> (created if needed). Throws <see cref="UnknownUserException"/> for a user the
    /// image does not know and <see cref="ArgumentException"/> for an invalid spec.
    /// </summary>
    public JsonObject Write(ContainerSpec spec, string bundleDir)
    {
        spec.Validate();
        Host.DataRootPermissions.EnsurePrivate(bundleDir);
        var config = BuildConfig(spec, bundleDir);
        WriteEtcFiles(spec, bundleDir);
        // The spec holds the container's environment: root only (the bundle is 0700 too).
        Host.DataRootPermissions.WritePrivateFileAtomically(Path.Combine(bundleDir, "config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return config;
    }

    /// <summary>The config.json for <paramref name="spec"/>; mount sources point into <paramref name="bundleDir"/>.</summary>
    public JsonObject BuildConfig(ContainerSpec spec, string bundleDir)
    {
        var caps = Capabilities.Effective(spec.CapAdd, spec.CapDrop, spec.Privileged, _hostCaps.Value);
        var linux = new JsonObject
        {
            ["namespaces"] = Namespaces(spec),
            ["cgroupsPath"] = CgroupsPath(spec.Id),
            ["resources"] = Resources(spec),
        };
        // --device: the node is made in the container (runc mknods it) and allowed in the device cgroup, as dockerd does.
        if (spec.Devices.Count > 0)
        {
            var devices = new JsonArray();
            var rules = (JsonArray)linux["resources"]!["devices"]!;
            foreach (var device in spec.Devices)
            {
                var node = DeviceNode.Of(device.PathOnHost);
                devices.Add(new JsonObject
                {
                    ["path"] = device.PathInContainer,
                    ["type"] = node.Type.ToString(),
                    ["major"] = node.Major,
                    ["minor"] = node.Minor,
                    ["fileMode"] = node.FileMode,
                    ["uid"] = node.Uid,
                    ["gid"] = node.Gid,
                });
                rules.Add(new JsonObject
                {
                    ["allow"] = true,
                    ["type"] = node.Type.ToString(),
                    ["major"] = node.Major,
                    ["minor"] = node.Minor,
                    ["access"] = device.CgroupPermissions,
                });
            }
            linux["devices"] = devices;
        }
        if (!spec.Privileged)
        {
            linux["maskedPaths"] = new JsonArray(MaskedPaths.Select(p => (JsonNode)p).ToArray());
            linux["readonlyPaths"] = new JsonArray(ReadonlyPaths.Select(p => (JsonNode)p).ToArray());
            if (_profile.Value is { } profile)
                linux["seccomp"] = _seccompByCaps.GetOrAdd(string.Join(',', caps.Order(StringComparer.Ordinal)),
                    _ => SeccompProfileConverter.Convert(profile, caps)).DeepClone();
        }

        // --init: tini as PID 1 runs the container's command and forwards signals to it (`--` ends tini's own options).
        IReadOnlyList<string> args = spec.Init ? [InitPathInContainer, "--", .. spec.Args] : spec.Args;
        if (spec.Init && !File.Exists(_options.InitPath))
            throw new ArgumentException($"--init needs {_options.InitPath} on this host (Debian package tini)");
        var process = Process(spec, args, BuildEnv(spec, []), spec.User, spec.WorkingDir, spec.Tty, spec.ConsoleSize, caps, spec.NoNewPrivileges);
        // Only the limits the container asks for (--ulimit); the rest are inherited from the engine. Execs inherit these too (runc).
        if (spec.Ulimits.Count > 0)
            process["rlimits"] = new JsonArray(spec.Ulimits.Select(u => (JsonNode)new JsonObject
            {
                ["type"] = "RLIMIT_" + u.Name.ToUpperInvariant(),
                ["soft"] = u.Soft < 0 ? ulong.MaxValue : (ulong)u.Soft,
                ["hard"] = u.Hard < 0 ? ulong.MaxValue : (ulong)u.Hard,
            }).ToArray());

        var annotations = new JsonObject();
        foreach (var (k, v) in spec.Labels) annotations[k] = v;

        return new JsonObject
        {
            ["ociVersion"] = "1.0.2",
            ["process"] = process,
            ["root"] = new JsonObject { ["path"] = Path.GetFullPath(spec.RootfsPath), ["readonly"] = spec.ReadonlyRootfs },
            ["hostname"] = spec.EffectiveHostname,
            ["mounts"] = Mounts(spec, bundleDir),
            ["annotations"] = annotations,
            ["linux"] = linux,
        };
    }

    /// <summary>The <c>process</c> object for <c>runc exec -p</c>.</summary>
    public JsonObject BuildExecProcess(ContainerSpec container, ExecSpec exec)
    {
        var caps = Capabilities.Effective(container.CapAdd, container.CapDrop, container.Privileged || exec.Privileged, _hostCaps.Value);
        return Process(container, exec.Args, BuildEnv(container, exec.Env, exec.Tty),
            exec.User.Length > 0 ? exec.User : container.User,
            exec.WorkingDir.Length > 0 ? exec.WorkingDir : container.WorkingDir,
            exec.Tty, exec.ConsoleSize, caps, container.NoNewPrivileges);
    }

    private static JsonObject Process(ContainerSpec spec, IReadOnlyList<string> args, List<string> env, string user, string cwd,
        bool tty, ConsoleSize? size, IReadOnlyList<string> caps, bool noNewPrivileges)
    {
        var resolved = UserResolver.Resolve(spec.RootfsPath, user);
        JsonArray Caps() => new(caps.Select(c => (JsonNode)c).ToArray());
        var process = new JsonObject
        {
            ["terminal"] = tty,
            ["user"] = new JsonObject
            {
                ["uid"] = resolved.Uid,
                ["gid"] = resolved.Gid,
                ["additionalGids"] = new JsonArray(resolved.AdditionalGids.Select(g => (JsonNode)g).ToArray()),
            },
            ["args"] = new JsonArray(args.Select(a => (JsonNode)a).ToArray()),
            ["env"] = new JsonArray(env.Select(e => (JsonNode)e).ToArray()),
            ["cwd"] = cwd.Length > 0 ? cwd : "/",
            ["capabilities"] = new JsonObject { ["bounding"] = Caps(), ["effective"] = Caps(), ["permitted"] = Caps() },
            ["noNewPrivileges"] = noNewPrivileges,
        };
        if (tty)
        {
            var s = size ?? new ConsoleSize(24, 80);
            process["consoleSize"] = new JsonObject { ["height"] = (int)s.Rows, ["width"] = (int)s.Columns };
        }
        return process;
    }

    /// <summary>Docker's order: PATH, HOSTNAME, TERM (tty), then the container's env replacing or appending.</summary>
    private static List<string> BuildEnv(ContainerSpec spec, IReadOnlyList<string> extra, bool? ttyOverride = null)
    {
        var env = new List<string> { DefaultPath, "HOSTNAME=" + spec.EffectiveHostname };
        if (ttyOverride ?? spec.Tty) env.Add("TERM=xterm");
        foreach (var e in spec.Env.Concat(extra))
        {
            var key = e.Split('=', 2)[0];
            var i = env.FindIndex(x => x.Split('=', 2)[0] == key);
            if (i >= 0) env[i] = e; else env.Add(e);
        }
        return env;
    }

    private static JsonArray Namespaces(ContainerSpec spec)
    {
        var ns = new JsonArray
        {
            new JsonObject { ["type"] = "pid" },
            new JsonObject { ["type"] = "ipc" },
            new JsonObject { ["type"] = "uts" },
            new JsonObject { ["type"] = "mount" },
        };
        switch (spec.NetworkMode)
        {
            case "host":
                break;
            case "none" or "":
                ns.Add(new JsonObject { ["type"] = "network" });
                break;
            case var path when path.StartsWith('/'):
                ns.Add(new JsonObject { ["type"] = "network", ["path"] = path });
                break;
            default:
                throw new ArgumentException($"network mode '{spec.NetworkMode}' is not 'none', 'host' or a netns path");
        }
        return ns;
    }

    private static JsonObject Resources(ContainerSpec spec)
    {
        var resources = new JsonObject();
        resources["devices"] = spec.Privileged
            ? new JsonArray(new JsonObject { ["allow"] = true, ["access"] = "rwm" })
            : new JsonArray(
                new JsonObject { ["allow"] = false, ["access"] = "rwm" },
                Dev('c', 1, 5), Dev('c', 1, 3), Dev('c', 1, 9), Dev('c', 1, 8), Dev('c', 5, 0), Dev('c', 5, 1),
                new JsonObject { ["allow"] = false, ["type"] = "c", ["major"] = 10, ["minor"] = 229, ["access"] = "rwm" });
        if (spec.Memory > 0) resources["memory"] = new JsonObject { ["limit"] = spec.Memory };
        var cpu = new JsonObject();
        if (spec.CpuShares > 0) cpu["shares"] = spec.CpuShares;
        if (spec.NanoCpus > 0)
        {
            const long period = 100_000;
            cpu["quota"] = spec.NanoCpus * period / 1_000_000_000;
            cpu["period"] = period;
        }
        if (cpu.Count > 0) resources["cpu"] = cpu;
        if (spec.PidsLimit > 0) resources["pids"] = new JsonObject { ["limit"] = spec.PidsLimit };
        return resources;

        static JsonObject Dev(char type, int major, int minor) => new()
        {
            ["allow"] = true,
            ["type"] = type.ToString(),
            ["major"] = major,
            ["minor"] = minor,
            ["access"] = "rwm",
        };
    }

    private JsonArray Mounts(ContainerSpec spec, string bundleDir)
    {
        var sysOptions = spec.Privileged ? new[] { "nosuid", "noexec", "nodev" } : ["nosuid", "noexec", "nodev", "ro"];
        var mounts = new JsonArray
        {
            M("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
            M("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
            M("/dev/pts", "devpts", "devpts", "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"),
            M("/sys", "sysfs", "sysfs", sysOptions),
            M("/sys/fs/cgroup", "cgroup", "cgroup", spec.Privileged ? ["rw", "nosuid", "noexec", "nodev"] : ["ro", "nosuid", "noexec", "nodev"]),
            M("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
            M("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777",
                "size=" + (spec.ShmSize > 0 ? spec.ShmSize : DefaultShmSize).ToString(System.Globalization.CultureInfo.InvariantCulture)),
        };
        var bundle = Path.GetFullPath(bundleDir);
        foreach (var file in new[] { "resolv.conf", "hostname", "hosts" })
            mounts.Add(M("/etc/" + file, "bind", Path.Combine(bundle, file), "rbind", "rprivate"));
        foreach (var b in spec.Binds)
            mounts.Add(M(b.ContainerPath, "bind", Path.GetFullPath(b.HostPath), "rbind", b.ReadOnly ? "ro" : "rw", b.Propagation));
        // dockerd's defaults for every tmpfs (noexec, nosuid, nodev), then the user's options, which runc applies in order.
        foreach (var t in spec.Tmpfs)
            mounts.Add(M(t.Destination, "tmpfs", "tmpfs", ["noexec", "nosuid", "nodev", "rprivate", .. t.Options]));
        if (spec.Init) mounts.Add(M(InitPathInContainer, "bind", _options.InitPath, "bind", "ro", "nosuid", "rprivate"));
        return mounts;

        static JsonObject M(string destination, string type, string source, params string[] options) => new()
        {
            ["destination"] = destination,
            ["type"] = type,
            ["source"] = source,
            ["options"] = new JsonArray(options.Select(o => (JsonNode)o).ToArray()),
        };
    }

    private void WriteEtcFiles(ContainerSpec spec, string bundleDir)
    {
        var hostNetwork = spec.NetworkMode == "host";
        WriteAtomically(Path.Combine(bundleDir, "hostname"), spec.EffectiveHostname + "\n");
        var hosts = hostNetwork && File.Exists(_options.HostHosts)
            ? File.ReadAllText(_options.HostHosts)
            : "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n" +
              "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";
        if (hosts.Length > 0 && !hosts.EndsWith('\n')) hosts += "\n";
        // --add-host name:ip, appended as dockerd does ("ip<TAB>name"); the address may be written [v6].
        foreach (var entry in spec.ExtraHosts)
        {
            var separator = entry.IndexOf(':') is var colon && entry.IndexOf('=') is var equals && equals >= 0 && (colon < 0 || equals < colon) ? equals : colon;
            if (separator <= 0) continue;
            hosts += entry[(separator + 1)..].Trim('[', ']') + "\t" + entry[..separator] + "\n";
        }
        WriteAtomically(Path.Combine(bundleDir, "hosts"), hosts);
        WriteAtomically(Path.Combine(bundleDir, "resolv.conf"), WithDnsOptions(ResolvConf(hostNetwork), spec));
    }

    /// <summary>
    /// <c>--dns</c>, <c>--dns-search</c>, <c>--dns-option</c> replace the nameserver, search and options lines of the
    /// resolv.conf the container would otherwise get (each kind only when given; <c>--dns-search .</c> = no search).
    /// </summary>
    private static string WithDnsOptions(string resolvConf, ContainerSpec spec)
    {
        if (spec.Dns.Count + spec.DnsSearch.Count + spec.DnsOptions.Count == 0) return resolvConf;
        var lines = resolvConf.Split('\n', StringSplitOptions.RemoveEmptyEntries).ToList();
        static bool Is(string line, string keyword) => line.TrimStart().StartsWith(keyword + " ", StringComparison.Ordinal) ||
                                                       line.TrimStart().StartsWith(keyword + "\t", StringComparison.Ordinal);
        if (spec.Dns.Count > 0)
        {
            lines.RemoveAll(l => Is(l, "nameserver"));
            lines.AddRange(spec.Dns.Select(d => "nameserver " + d));
        }
        if (spec.DnsSearch.Count > 0)
        {
            lines.RemoveAll(l => Is(l, "search") || Is(l, "domain"));
            var domains = spec.DnsSearch.Where(d => d != ".").ToList();
            if (domains.Count > 0) lines.Add("search " + string.Join(' ', domains));
        }
        if (spec.DnsOptions.Count > 0)
        {
            lines.RemoveAll(l => Is(l, "options"));
            lines.Add("options " + string.Join(' ', spec.DnsOptions));
        }
        return string.Join('\n', lines) + "\n";
    }

    /// <summary>
    /// The host's resolv.conf; outside the host network, loopback nameservers are unreachable and are dropped,
    /// with Google's public resolvers as the fallback when nothing remains (Docker's behaviour).
    /// </summary>
    private string ResolvConf(bool hostNetwork)
    {
        var lines = File.Exists(_options.HostResolvConf) ? File.ReadAllLines(_options.HostResolvConf).ToList() : [];
        if (hostNetwork) return string.Join('\n', lines) + "\n";
        static bool Loopback(string l)
        {
            var f = l.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            return f.Length >= 2 && f[0] == "nameserver" && (f[1].StartsWith("127.", StringComparison.Ordinal) || f[1] == "::1");
        }
        var kept = lines.Where(l => !Loopback(l)).ToList();
        if (!kept.Any(l => l.TrimStart().StartsWith("nameserver", StringComparison.Ordinal)))
            kept.AddRange(["nameserver 8.8.8.8", "nameserver 8.8.4.4"]);
        return string.Join('\n', kept) + "\n";
    }

    internal static void WriteAtomically(string path, string content)
    {
        var temp = path + ".tmp";
        File.WriteAllText(temp, content);
        File.Move(temp, path, overwrite: true);
    }
}
