using System.Text.Json.Nodes;
using Flotilla.NodeRuntime.Oci;
using Xunit;

namespace Flotilla.Tests.Oci;

public sealed class OciBundleBuilderSpec : IDisposable
{
    private readonly BusyboxRootfs _fs = new();
    private readonly string _bundle;

    public OciBundleBuilderSpec() => _bundle = Path.Combine(_fs.Root, "bundle");

    public void Dispose() => _fs.Dispose();

    private ContainerSpec Spec() => new()
    {
        Id = new string('c', 64),
        RootfsPath = _fs.Rootfs,
        Args = ["sh", "-c", "echo hi"],
        Env = ["A=1", "PATH=/bin"],
    };

    private static string[] Strings(JsonNode? n) => n!.AsArray().Select(x => (string)x!).ToArray();

    [Fact]
    public void Defaults_match_docker()
    {
        var config = new OciBundleBuilder().Write(Spec() with { User = "app", WorkingDir = "/home/app" }, _bundle);
        Assert.True(File.Exists(Path.Combine(_bundle, "config.json")));
        var process = config["process"]!;
        Assert.Equal(["sh", "-c", "echo hi"], Strings(process["args"]));
        Assert.Equal(["PATH=/bin", "HOSTNAME=cccccccccccc", "A=1"], Strings(process["env"]));
        Assert.Equal("/home/app", (string)process["cwd"]!);
        Assert.Equal(1000, (int)process["user"]!["uid"]!);
        Assert.Equal([10, 50], process["user"]!["additionalGids"]!.AsArray().Select(g => (int)g!).ToArray());
        Assert.Equal(Capabilities.Default, Strings(process["capabilities"]!["bounding"]));
        Assert.Equal(0xa80425fbUL, Capabilities.Mask(Strings(process["capabilities"]!["effective"])));
        Assert.Null(process["capabilities"]!["inheritable"]);
        Assert.Null(process["rlimits"]);
        Assert.Equal("cccccccccccc", (string)config["hostname"]!);

        var linux = config["linux"]!;
        Assert.Equal("/flotilla/" + new string('c', 64), (string)linux["cgroupsPath"]!);
        Assert.Equal(["pid", "ipc", "uts", "mount", "network"], linux["namespaces"]!.AsArray().Select(n => (string)n!["type"]!).ToArray());
        Assert.Contains("/proc/kcore", Strings(linux["maskedPaths"]));
        Assert.Contains("/proc/sys", Strings(linux["readonlyPaths"]));
        Assert.Equal("SCMP_ACT_ERRNO", (string)linux["seccomp"]!["defaultAction"]!);
        Assert.NotNull(linux["seccomp"]!["architectures"]);
        Assert.Null(linux["seccomp"]!["archMap"]);

        var mounts = config["mounts"]!.AsArray();
        Assert.Equal(["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm", "/etc/resolv.conf", "/etc/hostname", "/etc/hosts"],
            mounts.Select(m => (string)m!["destination"]!).ToArray());
        Assert.Equal(Path.Combine(_bundle, "hostname"), (string)mounts[8]!["source"]!);
        Assert.Equal("cccccccccccc\n", File.ReadAllText(Path.Combine(_bundle, "hostname")));
        Assert.Contains("localhost", File.ReadAllText(Path.Combine(_bundle, "hosts")));
        Assert.Contains("nameserver", File.ReadAllText(Path.Combine(_bundle, "resolv.conf")));
    }

    [Fact]
    public void Resources_binds_network_and_tty()
    {
        var spec = Spec() with
        {
            Memory = 1 << 30,
            NanoCpus = 1_500_000_000,
            CpuShares = 512,
            PidsLimit = 100,
            Tty = true,
            ConsoleSize = new ConsoleSize(40, 120),
            Binds = [new BindMount("/srv/data", "/data", ReadOnly: true)],
            NetworkMode = "/run/netns/x",
            ReadonlyRootfs = true,
            Labels = new Dictionary<string, string> { ["com.example"] = "yes" },
        };
        var config = new OciBundleBuilder().BuildConfig(spec, _bundle);
        var resources = config["linux"]!["resources"]!;
        Assert.Equal(1L << 30, (long)resources["memory"]!["limit"]!);
        Assert.Equal(150000, (long)resources["cpu"]!["quota"]!);
        Assert.Equal(100000, (long)resources["cpu"]!["period"]!);
        Assert.Equal(512, (long)resources["cpu"]!["shares"]!);
        Assert.Equal(100, (long)resources["pids"]!["limit"]!);
        Assert.True((bool)config["root"]!["readonly"]!);
        Assert.True((bool)config["process"]!["terminal"]!);
        Assert.Equal(40, (int)config["process"]!["consoleSize"]!["height"]!);
        Assert.Contains("TERM=xterm", Strings(config["process"]!["env"]));
        var bind = config["mounts"]!.AsArray().Last()!;
        Assert.Equal(["rbind", "ro", "rprivate"], Strings(bind["options"]));
        Assert.Equal("/run/netns/x", (string)config["linux"]!["namespaces"]!.AsArray().Single(n => (string)n!["type"]! == "network")!["path"]!);
        Assert.Equal("yes", (string)config["annotations"]!["com.example"]!);

        var host = new OciBundleBuilder().BuildConfig(Spec() with { NetworkMode = "host" }, _bundle);
        Assert.DoesNotContain("network", host["linux"]!["namespaces"]!.AsArray().Select(n => (string)n!["type"]!));
    }

    [Fact]
    public void Privileged_means_host_caps_no_seccomp_no_masks_all_devices()
    {
        var config = new OciBundleBuilder().BuildConfig(Spec() with { Privileged = true }, _bundle);
        var linux = config["linux"]!;
        Assert.Null(linux["seccomp"]);
        Assert.Null(linux["maskedPaths"]);
        Assert.Null(linux["readonlyPaths"]);
        Assert.Equal("""[{"allow":true,"access":"rwm"}]""", linux["resources"]!["devices"]!.ToJsonString());
        Assert.Equal(Capabilities.Host(), Strings(config["process"]!["capabilities"]!["bounding"]));
    }

    [Theory]
    [InlineData(new[] { "ALL" }, new string[0], "host")]
    [InlineData(new string[0], new[] { "ALL" }, "")]
    [InlineData(new[] { "sys_admin" }, new[] { "ALL" }, "CAP_SYS_ADMIN")]
    [InlineData(new[] { "CAP_NET_ADMIN" }, new[] { "net_raw" }, "default-CAP_NET_RAW+CAP_NET_ADMIN")]
    public void Cap_add_and_drop_follow_docker(string[] add, string[] drop, string expected)
    {
        var host = Capabilities.ByNumber.ToList();
        var caps = Capabilities.Effective(add, drop, privileged: false, host);
        IEnumerable<string> want = expected switch
        {
            "host" => host,
            "" => [],
            "default-CAP_NET_RAW+CAP_NET_ADMIN" => Capabilities.Default.Where(c => c != "CAP_NET_RAW").Append("CAP_NET_ADMIN"),
            _ => [expected],
        };
        Assert.Equal(want.ToHashSet(), caps.ToHashSet());
    }

    [Fact]
    public void Invalid_specs_are_refused()
    {
        var b = new OciBundleBuilder();
        Assert.Throws<Flotilla.Contracts.Containers.InvalidContainerIdException>(() => b.Write(Spec() with { Id = "short" }, _bundle));
        Assert.Throws<ArgumentException>(() => b.Write(Spec() with { Args = [] }, _bundle));
        Assert.Throws<ArgumentException>(() => b.Write(Spec() with { WorkingDir = "relative" }, _bundle));
        Assert.Throws<ArgumentException>(() => b.Write(Spec() with { CapAdd = ["CAP_BOGUS"] }, _bundle));
        Assert.Throws<ArgumentException>(() => b.Write(Spec() with { NetworkMode = "bridge" }, _bundle));
        Assert.Throws<UnknownUserException>(() => b.Write(Spec() with { User = "ghost" }, _bundle));
    }

    [Fact]
    public void Loopback_nameservers_are_dropped_outside_the_host_network()
    {
        var resolv = Path.Combine(_fs.Root, "resolv.conf");
        File.WriteAllText(resolv, "search example.com\nnameserver 127.0.0.53\n");
        var b = new OciBundleBuilder(new OciBundleOptions { HostResolvConf = resolv });
        b.Write(Spec(), _bundle);
        Assert.Equal("search example.com\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n", File.ReadAllText(Path.Combine(_bundle, "resolv.conf")));
        b.Write(Spec() with { NetworkMode = "host" }, _bundle);
        Assert.Equal("search example.com\nnameserver 127.0.0.53\n", File.ReadAllText(Path.Combine(_bundle, "resolv.conf")));
    }
}
