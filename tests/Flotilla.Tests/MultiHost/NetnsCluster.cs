// Shared by the multi-host tests (tests/Flotilla.Tests/MultiHost) and the failover benchmark
// (bench/Flotilla.Bench.Failover links this file): keep it free of xunit and of the tests' Support helpers.
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace Flotilla.Tests.MultiHost;

/// <summary>What a <see cref="NetnsCluster"/> starts.</summary>
public sealed record NetnsClusterOptions
{
    public int Hosts { get; init; } = 3;

    /// <summary>Start a gateway in the root namespace (Docker API and native API on 127.0.0.1).</summary>
    public bool Gateway { get; init; } = true;

    /// <summary>
    /// Run the gateway as a machine of its own instead: network namespace <c>flt&lt;hex&gt;-gw</c> at 10.x.y.2, started
    /// with the README's cluster flags verbatim (<c>--docker-api 127.0.0.1:2375</c>, <c>--http 127.0.0.1:8080</c>,
    /// <c>--registry 10.x.y.2:5000 --tls=false</c>); the docker CLI reaches it from inside that namespace. Its loopback is
    /// no host's loopback, so whatever it offers the nodes must be on its cluster address.
    /// </summary>
    public bool GatewayOwnNamespace { get; init; }

    /// <summary><c>--stable-after</c> of every process (how long the split brain resolver waits before downing); null: the CLI's default.</summary>
    public string? StableAfter { get; init; }

    /// <summary><c>--heartbeat-pause</c> of every process (silence before a member is unreachable); null: the CLI's default.</summary>
    public string? HeartbeatPause { get; init; }

    /// <summary>Node labels (<c>k=v</c>) of host <c>i</c> (1-based).</summary>
    public Func<int, IEnumerable<string>> Labels { get; init; } = _ => [];

    /// <summary>The built CLI; default: <c>flotilla.dll</c> next to the running assembly (test and bench outputs carry it).</summary>
    public string? FlotillaDll { get; init; }

    /// <summary>Where the progress of setup and teardown goes (a test's output, the console).</summary>
    public Action<string>? Trace { get; init; }

    /// <summary>Copy every process's log to this directory on teardown (the temp root goes).</summary>
    public string? KeepLogsIn { get; init; }
}

/// <summary>
/// A Flotilla cluster of N "hosts" on one machine (docs/ARCHITECTURE.md, "Testing a cluster on one machine"):
/// a bridge <c>flt&lt;hex&gt;</c> with 10.x.y.1/24, one network namespace per host (veth into the bridge, address
/// 10.x.y.(10+i)), and in it <c>unshare --pid --fork --kill-child --mount-proc</c> running <c>flotilla node</c>, so a
/// SIGKILL to that <c>unshare</c> is a host crash (every process of the host dies, containers included) and a veth
/// taken down is a partition. A dedicated PostgreSQL 15 listens on the bridge address; the gateway runs in the root
/// namespace (cluster transport on the bridge address, Docker API and native API on 127.0.0.1). Needs root.
/// DisposeAsync leaves nothing behind: processes, namespaces, links, cgroups of the hosts' containers, mounts, temp dir.
/// </summary>
public sealed class NetnsCluster : IAsyncDisposable
{
    public const string PostgresBin = "/usr/lib/postgresql/15/bin";
    private const int ClusterPort = 4053;
    internal const int PostgresPort = 5432;
    private static readonly TimeSpan UpTimeout = TimeSpan.FromSeconds(90);

    private readonly NetnsClusterOptions _options;
    private readonly List<ManagedProcess> _processes = [];
    private readonly List<string> _cleanupErrors = [];
    private bool _bridgeCreated;
    private bool _postgresStarted;
    private int _disposed;

    private NetnsCluster(NetnsClusterOptions options, string id, string subnet)
    {
        _options = options;
        Id = id;
        Subnet = subnet;
        Root = Path.Combine("/tmp", "flt" + id);
        FlotillaDll = options.FlotillaDll ?? Path.Combine(AppContext.BaseDirectory, "flotilla.dll");
        Hosts = Enumerable.Range(1, options.Hosts).Select(i => new NetnsHost(this, i)).ToList();
    }

    /// <summary>Six hex digits naming everything of this cluster: bridge <c>flt&lt;id&gt;</c>, namespaces <c>flt&lt;id&gt;-h&lt;i&gt;</c>.</summary>
    public string Id { get; }

    /// <summary>The first three octets, <c>10.x.y</c>.</summary>
    public string Subnet { get; }
    public string Root { get; }
    public string FlotillaDll { get; }
    public string Bridge => "flt" + Id;
    public string BridgeAddress => Subnet + ".1";
    public IReadOnlyList<NetnsHost> Hosts { get; }

    /// <summary>Host <paramref name="i"/>, 1-based as in its name <c>h&lt;i&gt;</c>.</summary>
    public NetnsHost Host(int i) => Hosts[i - 1];

    public string PostgresConnectionString =>
        $"Host={BridgeAddress};Port={PostgresPort};Username=postgres;Database=flotilla;Timeout=15;Command Timeout=30;Maximum Pool Size=40";

    public int GatewayDockerPort { get; private set; }
    public int GatewayHttpPort { get; private set; }

    /// <summary><c>DOCKER_HOST</c> for the real docker CLI: the gateway's Docker API (in <see cref="GatewayNamespace"/> when it has one).</summary>
    public string DockerHost => $"tcp://127.0.0.1:{GatewayDockerPort}";

    /// <summary>The gateway's own network namespace (<see cref="NetnsClusterOptions.GatewayOwnNamespace"/>), or null: the root namespace.</summary>
    public string? GatewayNamespace => _options.GatewayOwnNamespace ? $"flt{Id}-gw" : null;

    /// <summary>The gateway's cluster address: its own (10.x.y.2) in a namespace of its own, else the bridge address.</summary>
    public string GatewayAddress => _options.GatewayOwnNamespace ? Subnet + ".2" : BridgeAddress;
    private bool _gatewayNamespaceCreated;
    public Uri NativeApi => new($"http://127.0.0.1:{GatewayHttpPort}/");

    /// <summary>Environment for the flotilla CLI: where it finds the gateway's native API token.</summary>
    public IReadOnlyDictionary<string, string> CliEnvironment => new Dictionary<string, string> { ["FLOTILLA_DATA"] = Path.Combine(Root, "gw") };
    private ManagedProcess? Gateway { get; set; }

    /// <summary>Why this machine cannot run a namespace cluster, or null when it can.</summary>
    public static string? UnavailableReason(string? flotillaDll = null)
    {
        if (!OperatingSystem.IsLinux()) return "network namespaces need Linux";
        if (geteuid() != 0) return "needs root (network namespaces, veth, bridge)";
        foreach (var tool in new[] { "ip", "unshare", "nsenter", "runuser", "tini", "nft", "sh" })
            if (Which(tool) is null) return $"'{tool}' is not installed";
        if (!File.Exists(Path.Combine(PostgresBin, "pg_ctl"))) return $"PostgreSQL 15 is not installed in {PostgresBin}";
        var dll = flotillaDll ?? Path.Combine(AppContext.BaseDirectory, "flotilla.dll");
        if (!File.Exists(dll)) return $"the flotilla CLI is not built ({dll})";
        return null;
    }

    public static async Task<NetnsCluster> StartAsync(NetnsClusterOptions? options = null, CancellationToken ct = default)
    {
        options ??= new NetnsClusterOptions();
        if (UnavailableReason(options.FlotillaDll) is { } reason) throw new InvalidOperationException(reason);
        for (var attempt = 1; ; attempt++)
        {
            var cluster = new NetnsCluster(options, RandomHex(), await FreeSubnetAsync(ct));
            try
            {
                await cluster.SetUpAsync(ct);
                return cluster;
            }
            catch (ClusterFellApartException e) when (attempt < 3)
            {
                // Four .NET processes (and their watchdogs) starting at once on a loaded 2-core machine can starve
                // heartbeats past the 1.5 s pause the failure detector allows: the resolver then downs members that
                // just joined (seen in CI). That is the product working as configured, not the scenario under test.
                cluster.TraceLine($"[netns {cluster.Id}] {e.Message}; setting the cluster up again");
                await cluster.DisposeAsync();
            }
            catch
            {
                var logs = cluster.Logs();
                await cluster.DisposeAsync();
                cluster.TraceLine(logs);
                throw;
            }
        }
    }

    private sealed class ClusterFellApartException(string message) : Exception(message);

    /// <summary>How long every process must stay up after the cluster formed before a scenario may start.</summary>
    private static readonly TimeSpan SettleFor = TimeSpan.FromSeconds(4);

    private async Task SetUpAsync(CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        Directory.CreateDirectory(Root);
        Directory.CreateDirectory(LogDirectory);
        TraceLine($"[netns {Id}] bridge {Bridge} {BridgeAddress}/24, {Hosts.Count} host(s), root {Root}");

        await Ip(ct, "link", "add", "name", Bridge, "type", "bridge");
        _bridgeCreated = true;
        await Ip(ct, "addr", "add", BridgeAddress + "/24", "dev", Bridge);
        await Ip(ct, "link", "set", Bridge, "up");
        foreach (var host in Hosts) await host.CreateNamespaceAsync(ct);
        if (GatewayNamespace is { } gatewayNamespace) await CreateGatewayNamespaceAsync(gatewayNamespace, ct);

        await Task.WhenAll(StartPostgresAsync(ct), IssueCertificatesAsync(ct));
        TraceLine($"[netns {Id}] network and PostgreSQL ready in {clock.Elapsed.TotalSeconds:F1} s");

        // The first host alone: it forms the cluster and creates the event store's schema. Processes that all start
        // on an empty database at once contend for Marten's schema lock, and on a loaded machine some time out.
        // Then the others and the gateway together.
        await Hosts[0].StartAsync(ct);
        await Hosts[0].WaitUpAsync(ct);
        foreach (var host in Hosts.Skip(1)) await host.StartAsync(ct);
        var gateway = _options.Gateway ? StartGatewayAsync(ct) : Task.CompletedTask;
        await Task.WhenAll(Hosts.Skip(1).Select(h => h.WaitUpAsync(ct)).Append(gateway));
        TraceLine($"[netns {Id}] cluster up in {clock.Elapsed.TotalSeconds:F1} s");
        await Task.Delay(SettleFor, ct);
        var gone = Hosts.Where(h => !h.EngineRunning).Select(h => h.Name)
            .Concat(Gateway is { HasExited: true } ? ["gateway"] : []).ToList();
        if (gone.Count > 0) throw new ClusterFellApartException($"{string.Join(", ", gone)} left the cluster right after it formed");
    }

    internal NetnsClusterOptions Options => _options;

    internal string[] FailureDetectorFlags =>
    [
        .. _options.StableAfter is { } stable ? new[] { "--stable-after", stable } : [],
        .. _options.HeartbeatPause is { } pause ? new[] { "--heartbeat-pause", pause } : [],
    ];
    internal string LogDirectory => Path.Combine(Root, "logs");
    internal string Seeds => string.Join(',', Hosts.Select(h => $"{h.Address}:{ClusterPort}"));
    internal int Port => ClusterPort;

    // ---------------------------------------------------------------- faults

    /// <summary>Host crash: SIGKILL to host <paramref name="i"/>'s init, so every process of the host dies (engine, conmon, containers); returns once none is left.</summary>
    public Task KillHostAsync(int i, CancellationToken ct = default) => Host(i).KillAsync(ct);

    /// <summary>Engine crash: SIGKILL to host <paramref name="i"/>'s <c>flotilla node</c> process only; conmon, the containers and any detached child of the engine keep running.</summary>
    public Task KillEngineAsync(int i) => Host(i).KillEngineAsync();

    /// <summary>Starts the engine of host <paramref name="i"/> again (its host still up) and waits until it prints " is up at ".</summary>
    public Task StartEngineAsync(int i, CancellationToken ct = default) => Host(i).StartEngineAsync(ct);

    /// <summary><see cref="KillEngineAsync"/> (when it runs) then <see cref="StartEngineAsync"/>.</summary>
    public async Task RestartEngineAsync(int i, CancellationToken ct = default)
    {
        await Host(i).KillEngineAsync();
        await Host(i).StartEngineAsync(ct);
    }

    /// <summary>Silent death: host <paramref name="i"/>'s link goes down first (no FIN or RST leaves it), then the host is killed. Its link stays down until <see cref="HealAsync"/>.</summary>
    public async Task SilentDeathAsync(int i, CancellationToken ct = default)
    {
        await PartitionAsync(i, ct);
        await KillHostAsync(i, ct);
    }

    /// <summary>Cut host <paramref name="i"/> off the network (its veth down: PostgreSQL is unreachable too); it keeps running.</summary>
    public Task PartitionAsync(int i, CancellationToken ct = default) => Ip(ct, "link", "set", Host(i).Veth, "down");

    /// <summary>
    /// Cut host <paramref name="i"/>'s cluster traffic only (nftables in its network namespace drop everything to and from
    /// the subnet — peers' cluster port 4053, node APIs 2376, enrollment, the gateway — but PostgreSQL on the bridge address).
    /// </summary>
    public Task PartitionClusterOnlyAsync(int i, CancellationToken ct = default) => Host(i).CutClusterTrafficAsync(ct);

    /// <summary>Undoes <see cref="PartitionAsync"/> and <see cref="PartitionClusterOnlyAsync"/>.</summary>
    public async Task HealAsync(int i, CancellationToken ct = default)
    {
        await Ip(ct, "link", "set", Host(i).Veth, "up");
        await Host(i).HealClusterTrafficAsync(ct);
    }

    /// <summary>A paused VM: SIGSTOP every process of host <paramref name="i"/> at once, wait <paramref name="duration"/>, SIGCONT all at once.</summary>
    public Task PauseHostAsync(int i, TimeSpan duration, CancellationToken ct = default) => Host(i).PauseAsync(duration, ct);

    /// <summary>A short partition: down for <paramref name="duration"/>, then up again.</summary>
    public async Task BlipAsync(int i, TimeSpan duration, CancellationToken ct = default)
    {
        await PartitionAsync(i, ct);
        try
        {
            await Task.Delay(duration, ct);
        }
        finally
        {
            await HealAsync(i, CancellationToken.None);
        }
    }

    /// <summary>Starts host <paramref name="i"/> again (killing it first if it runs: a new init, file view and engine) and waits until it is up.</summary>
    public async Task RestartHostAsync(int i, CancellationToken ct = default)
    {
        var host = Host(i);
        await host.KillAsync(ct);
        await host.StartAsync(ct);
        await host.WaitUpAsync(ct);
    }

    /// <summary>Samples which container runs where from every host's processes (<see cref="RunSampler"/>), from now until it is disposed.</summary>
    public RunSampler StartSampler(TimeSpan? interval = null) => RunSampler.Start(this, interval ?? TimeSpan.FromMilliseconds(100));

    // ---------------------------------------------------------------- commands

    /// <summary>The real docker CLI against the gateway.</summary>
    public Task<CommandResult> DockerAsync(params string[] args) => DockerAsync(CancellationToken.None, args);

    public Task<CommandResult> DockerAsync(CancellationToken ct, params string[] args) =>
        GatewayNamespace is { } gatewayNamespace
            ? Command.RunAsync("nsenter", ["--net=/run/netns/" + gatewayNamespace, "--", "docker", "-H", DockerHost, .. args], ct, DockerEnvironment)
            : Command.RunAsync("docker", ["-H", DockerHost, .. args], ct, DockerEnvironment);

    /// <summary>The real docker CLI against host <paramref name="i"/>'s own Docker API (reached over the bridge).</summary>
    public Task<CommandResult> NodeDockerAsync(int i, params string[] args) =>
        Command.RunAsync("docker", ["-H", $"tcp://{Host(i).ApiEndpoint}", .. NodeTlsFlags, .. args], CancellationToken.None, DockerEnvironment);

    /// <summary>A node's API takes only cluster certificates: the docker CLI presents the gateway's (an operator's tool, like a gateway).</summary>
    private string[] NodeTlsFlags
    {
        get
        {
            var pki = Path.Combine(Root, "gw", "pki");
            return ["--tlsverify", "--tlscacert", Path.Combine(pki, "ca.pem"), "--tlscert", Path.Combine(pki, "cert.pem"), "--tlskey", Path.Combine(pki, "key.pem")];
        }
    }

    private Dictionary<string, string> DockerEnvironment => new() { ["DOCKER_CONFIG"] = Path.Combine(Root, "docker-config") };

    /// <summary>
    /// A minimal busybox image (<c>sh</c>, <c>sleep</c>, <c>true</c>) imported through the gateway, then saved and loaded
    /// into every host through its own Docker API, so it has the same image ID everywhere and no run waits on a transfer.
    /// </summary>
    public async Task ImportBusyboxEverywhereAsync(string reference, CancellationToken ct = default)
    {
        var rootfs = Path.Combine(Root, "busybox-rootfs.tar");
        WriteBusyboxRootfs(rootfs);
        await DockerOk(ct, "import", "-c", "CMD [\"/bin/sh\"]", rootfs, reference);
        var archive = Path.Combine(Root, "busybox-image.tar");
        await DockerOk(ct, "save", "-o", archive, reference);
        foreach (var host in Hosts.Where(h => h.IsRunning))
        {
            var load = await NodeDockerAsync(host.Index, "load", "-i", archive);
            if (load.ExitCode != 0) throw new InvalidOperationException($"docker load on {host.Name}: {load}");
        }
    }

    private async Task DockerOk(CancellationToken ct, params string[] args)
    {
        var result = await DockerAsync(ct, args);
        if (result.ExitCode != 0) throw new InvalidOperationException($"docker {string.Join(' ', args)}: {result}");
    }

    /// <summary>A busybox rootfs tar (<c>sh</c>, <c>sleep</c>, <c>cat</c>, …) with <paramref name="extraFiles"/> (path → text) in it.</summary>
    public static void WriteBusyboxRootfs(string path, IReadOnlyDictionary<string, string>? extraFiles = null)
    {
        var busybox = File.Exists("/bin/busybox") ? "/bin/busybox" : "/usr/bin/busybox";
        using var file = File.Create(path);
        using var tar = new System.Formats.Tar.TarWriter(file, System.Formats.Tar.TarEntryFormat.Pax);
        const UnixFileMode dirMode = (UnixFileMode)0b111_101_101;
        foreach (var dir in new[] { "bin/", "etc/", "root/" })
            tar.WriteEntry(new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.Directory, dir) { Mode = dirMode });
        tar.WriteEntry(new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.Directory, "tmp/") { Mode = (UnixFileMode)0b1_111_111_111 });
        tar.WriteEntry(new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.RegularFile, "bin/busybox")
        {
            Mode = dirMode,
            DataStream = new MemoryStream(File.ReadAllBytes(busybox)),
        });
        foreach (var applet in new[] { "sh", "sleep", "true", "echo", "cat", "ls", "ps" })
            tar.WriteEntry(new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.SymbolicLink, "bin/" + applet) { LinkName = "busybox" });
        tar.WriteEntry(new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.RegularFile, "etc/passwd")
        {
            Mode = (UnixFileMode)0b110_100_100,
            DataStream = new MemoryStream("root:x:0:0:root:/root:/bin/sh\n"u8.ToArray()),
        });
        tar.WriteEntry(new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.RegularFile, "etc/group")
        {
            Mode = (UnixFileMode)0b110_100_100,
            DataStream = new MemoryStream("root:x:0:\n"u8.ToArray()),
        });
        foreach (var (name, text) in extraFiles ?? new Dictionary<string, string>())
            tar.WriteEntry(new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.RegularFile, name)
            {
                Mode = (UnixFileMode)0b110_100_100,
                DataStream = new MemoryStream(Encoding.UTF8.GetBytes(text)),
            });
    }

    /// <summary>GET on the gateway's native API (a gateway in the root namespace only: its 127.0.0.1 is this process's).</summary>
    public async Task<string> GetNativeAsync(string pathAndQuery, CancellationToken ct = default)
    {
        using var http = new HttpClient { BaseAddress = NativeApi, Timeout = TimeSpan.FromSeconds(30) };
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer",
            File.ReadAllText(Flotilla.Gateway.Listeners.NativeApiTokens.FileOf(Path.Combine(Root, "gw"), Flotilla.Gateway.Listeners.NativeRole.Admin)).Trim());
        return await http.GetStringAsync(pathAndQuery.TrimStart('/'), ct);
    }

    /// <summary>Every log line of every process so far (the last <paramref name="tail"/> of each), for a failure report.</summary>
    public string Logs(int tail = 150)
    {
        var text = new StringBuilder();
        foreach (var p in _processes.ToList())
        {
            var lines = p.Lines.ToArray();
            text.AppendLine($"===== {p.Name} (pid {p.Pid}{(p.HasExited ? $", exited {p.ExitCode}" : "")}), {lines.Length} lines, full log {p.LogFile}");
            foreach (var line in lines.Skip(Math.Max(0, lines.Length - tail))) text.AppendLine(line);
        }
        return text.ToString();
    }

    // ---------------------------------------------------------------- processes

    internal ManagedProcess Launch(string name, string file, IReadOnlyList<string> args)
    {
        var incarnation = _processes.Count(p => p.Name.StartsWith(name + "#", StringComparison.Ordinal)) + 1;
        var process = ManagedProcess.Start($"{name}#{incarnation}", Path.Combine(LogDirectory, $"{name}.{incarnation}.log"), file, args);
        lock (_processes) _processes.Add(process);
        return process;
    }

    private async Task StartGatewayAsync(CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            Gateway = LaunchGateway();
            try
            {
                await Gateway.WaitForLineAsync(" is up at ", UpTimeout, ct);
                return;
            }
            catch (InvalidOperationException) when (attempt < 3 && Gateway.HasExited &&
                Gateway.Lines.Any(l => l.Contains("could not join with the token", StringComparison.Ordinal)))
            {
                // The first host answers enrollments while the others start: on a loaded 2-core machine its answer can
                // miss the joiner's 15 s deadline. The gateway exits (2) and would be restarted by its supervisor.
                TraceLine($"[netns {Id}] the gateway's enrollment timed out; starting it again");
            }
        }
    }

    private ManagedProcess LaunchGateway()
    {
        if (GatewayNamespace is { } gatewayNamespace)
        {
            // The README's cluster example, flag for flag (its 10.0.0.1 is this gateway's own address here).
            GatewayDockerPort = 2375;
            GatewayHttpPort = 8080;
            return Launch("gateway", "nsenter",
            [
                "--net=/run/netns/" + gatewayNamespace, "--", "dotnet", FlotillaDll, "gateway", "--name", "gateway-vm",
                "--bind", $"{GatewayAddress}:4060", "--join", Seeds, "--join-token", JoinToken,
                "--docker-api", "127.0.0.1:2375", "--registry", $"{GatewayAddress}:5000", "--tls=false", "--http", "127.0.0.1:8080",
                "--postgres", PostgresConnectionString, "--data", Path.Combine(Root, "gw"), .. FailureDetectorFlags,
            ]);
        }
        GatewayDockerPort = FreeLoopbackPort();
        GatewayHttpPort = FreeLoopbackPort();
        var bindPort = FreePort(IPAddress.Parse(BridgeAddress));
        return Launch("gateway", "dotnet",
        [
            FlotillaDll, "gateway", "--name", "gw", "--bind", $"{BridgeAddress}:{bindPort}", "--join", Seeds,
            "--postgres", PostgresConnectionString, "--docker-api", $"127.0.0.1:{GatewayDockerPort}", "--registry", "none",
            "--http", $"127.0.0.1:{GatewayHttpPort}", "--data", Path.Combine(Root, "gw"), "--join-token", JoinToken, .. FailureDetectorFlags,
        ]);
    }

    /// <summary>The gateway's machine: a network namespace with a veth into the bridge and <see cref="GatewayAddress"/>.</summary>
    private async Task CreateGatewayNamespaceAsync(string gatewayNamespace, CancellationToken ct)
    {
        await Ip(ct, "netns", "add", gatewayNamespace);
        _gatewayNamespaceCreated = true;
        var veth = $"flt{Id}gw";
        var peer = $"flt{Id}pg";
        await Ip(ct, "link", "add", veth, "type", "veth", "peer", "name", peer);
        await Ip(ct, "link", "set", peer, "netns", gatewayNamespace);
        await Ip(ct, "link", "set", veth, "master", Bridge);
        await Ip(ct, "link", "set", veth, "up");
        await Ip(ct, "-n", gatewayNamespace, "link", "set", peer, "name", "eth0");
        await Ip(ct, "-n", gatewayNamespace, "addr", "add", GatewayAddress + "/24", "dev", "eth0");
        await Ip(ct, "-n", gatewayNamespace, "link", "set", "eth0", "up");
        await Ip(ct, "-n", gatewayNamespace, "link", "set", "lo", "up");
    }

    // ---------------------------------------------------------------- cluster certificates

    /// <summary>Where the cluster CA lives: only the operator's side of the harness holds its key, no host does.</summary>
    internal string CaDirectory => Path.Combine(Root, "ca");

    /// <summary>The CA's files, which the first host is given (<c>--cluster-ca-cert/--cluster-ca-key</c>): it answers join tokens.</summary>
    internal string[] CaHolderFlags =>
        ["--cluster-ca-cert", Path.Combine(CaHolderDirectory, "ca.pem"), "--cluster-ca-key", Path.Combine(CaHolderDirectory, "ca-key.pem")];

    /// <summary>The first host's copy of the CA files, in its own data dir: it sees no other (the CA dir is hidden in it).</summary>
    private string CaHolderDirectory => Path.Combine(Hosts[0].DataDirectory, "ca-holder");

    /// <summary>What the gateway joins with (<c>flotilla cluster join-token</c>).</summary>
    private string JoinToken { get; set; } = "";

    /// <summary>
    /// The operator's steps with the CLI: <c>flotilla cluster ca init</c>, then one <c>flotilla cluster cert issue</c> per
    /// host, straight into each host's <c>&lt;data&gt;/pki</c>; the first host also holds the CA key and the gateway joins
    /// with a join token, getting its certificate from that host. Every hop then runs mutual TLS.
    /// </summary>
    private async Task IssueCertificatesAsync(CancellationToken ct)
    {
        await Run(ct, "dotnet", FlotillaDll, "cluster", "ca", "init", "--data", CaDirectory);
        var issues = Hosts.Select(h => Run(ct, "dotnet", FlotillaDll, "cluster", "cert", "issue", "--data", CaDirectory, "--role", "node",
            "--name", h.Name, "--san", h.Address, "--out", Path.Combine(h.DataDirectory, "pki")));
        var token = Run(ct, "dotnet", FlotillaDll, "cluster", "join-token", "--data", CaDirectory);
        await Task.WhenAll(issues.Append(token));
        JoinToken = (await token).Stdout.Trim();
        Directory.CreateDirectory(CaHolderDirectory);
        foreach (var file in new[] { "ca.pem", "ca-key.pem", Flotilla.Cluster.Security.Enrollment.SecretFile })
            File.Copy(Path.Combine(CaDirectory, "pki", file), Path.Combine(CaHolderDirectory, file));
    }

    // ---------------------------------------------------------------- PostgreSQL

    private string PgData => Path.Combine(Root, "pg");
    private string PgSocket => Path.Combine(Root, "pgsock");
    private string PgLogDirectory => Path.Combine(Root, "pglog"); // the server writes it as user postgres

    private async Task StartPostgresAsync(CancellationToken ct)
    {
        foreach (var dir in new[] { PgData, PgSocket, PgLogDirectory })
        {
            Directory.CreateDirectory(dir);
            await Run(ct, "chown", "postgres:postgres", dir);
        }
        File.SetUnixFileMode(PgData, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        await Run(ct, "runuser", "-u", "postgres", "--", Path.Combine(PostgresBin, "initdb"), "-D", PgData, "-U", "postgres",
            "--auth=trust", "-E", "UTF8", "--no-locale");
        // Trust for the test subnet only: the hosts connect over the bridge.
        await File.AppendAllTextAsync(Path.Combine(PgData, "pg_hba.conf"), $"\nhost all all {Subnet}.0/24 trust\n", ct);
        var options = $"-c listen_addresses={BridgeAddress} -p {PostgresPort} -k {PgSocket} -c max_connections=300 -c fsync=off";
        _postgresStarted = true;
        await Run(ct, "runuser", "-u", "postgres", "--", Path.Combine(PostgresBin, "pg_ctl"), "-D", PgData,
            "-l", Path.Combine(PgLogDirectory, "postgres.log"), "-w", "-t", "60", "-o", options, "start");
        await Run(ct, "runuser", "-u", "postgres", "--", Path.Combine(PostgresBin, "createdb"), "-h", PgSocket, "-p",
            PostgresPort.ToString(CultureInfo.InvariantCulture), "-U", "postgres", "flotilla");
    }

    // ---------------------------------------------------------------- teardown

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        var clock = Stopwatch.StartNew();
        if (Gateway is { HasExited: false } gateway) await gateway.KillAsync();
        foreach (var host in Hosts) await Try(() => host.KillAsync(CancellationToken.None), $"kill {host.Name}");
        foreach (var p in _processes.ToList()) await Try(() => p.KillAsync(), $"kill {p.Name}");
        await Try(RemoveContainerCgroupsAsync, "container cgroups");
        foreach (var host in Hosts) await Try(() => host.DeleteNamespaceAsync(), $"namespace of {host.Name}");
        if (_gatewayNamespaceCreated && GatewayNamespace is { } gatewayNamespace)
            await Try(() => Ip(CancellationToken.None, "netns", "del", gatewayNamespace), "namespace of the gateway"); // takes its veth pair
        if (_bridgeCreated) await Try(() => Ip(CancellationToken.None, "link", "del", Bridge), "bridge");
        if (_postgresStarted && File.Exists(Path.Combine(PgData, "postmaster.pid")))
            await Try(() => Run(CancellationToken.None, "runuser", "-u", "postgres", "--", Path.Combine(PostgresBin, "pg_ctl"),
                "-D", PgData, "-m", "immediate", "-w", "-t", "30", "stop"), "postgres");
        foreach (var p in _processes.ToList()) p.Dispose();
        if (_options.KeepLogsIn is { } keep && Directory.Exists(LogDirectory))
        {
            Directory.CreateDirectory(keep);
            foreach (var log in Directory.EnumerateFiles(LogDirectory)) File.Copy(log, Path.Combine(keep, Path.GetFileName(log)), overwrite: true);
        }
        await Try(() => { RemoveTree(Root); return Task.CompletedTask; }, "temp dir");
        var leftovers = (await LeftoversAsync(Id)).Concat(_cleanupErrors).ToList();
        Leftovers = leftovers;
        TraceLine($"[netns {Id}] torn down in {clock.Elapsed.TotalSeconds:F1} s" +
            (leftovers.Count == 0 ? "" : $"; LEFT: {string.Join("; ", leftovers)}"));
    }

    /// <summary>Anything of cluster <paramref name="id"/> still on this machine: namespaces, links, mounts, processes, its temp dir, its hosts' cgroups.</summary>
    public static async Task<IReadOnlyList<string>> LeftoversAsync(string id)
    {
        var found = new List<string>();
        var name = "flt" + id;
        var netns = await Command.RunAsync("ip", ["netns", "list"], CancellationToken.None);
        found.AddRange(Lines(netns.Stdout).Where(l => l.Contains(name, StringComparison.Ordinal)).Select(l => "netns " + l));
        var links = await Command.RunAsync("ip", ["-o", "link", "show"], CancellationToken.None);
        found.AddRange(Lines(links.Stdout).Where(l => l.Contains(name, StringComparison.Ordinal)).Select(l => "link " + l));
        var root = Path.Combine("/tmp", name);
        found.AddRange(File.ReadLines("/proc/self/mountinfo").Select(l => l.Split(' ')[4])
            .Where(m => m == root || m.StartsWith(root + "/", StringComparison.Ordinal) || m.Contains("/netns/" + name, StringComparison.Ordinal))
            .Select(m => "mount " + m));
        foreach (var proc in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(proc), out var pid) || pid == Environment.ProcessId) continue;
            try
            {
                var cmdline = File.ReadAllText(Path.Combine(proc, "cmdline")).Replace('\0', ' ');
                if (cmdline.Contains(root, StringComparison.Ordinal) || cmdline.Contains(name + "-h", StringComparison.Ordinal))
                    found.Add($"process {pid} {cmdline.Trim()}");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
            }
        }
        if (Directory.Exists(root)) found.Add("directory " + root);
        found.AddRange(ContainerCgroups(id).Select(c => "cgroup " + c));
        return found;
    }

    /// <summary>
    /// runc puts each container of host i in <c>/sys/fs/cgroup/&lt;controller&gt;/flotilla-&lt;id&gt;-h&lt;i&gt;/&lt;container id&gt;</c>
    /// (the host's <c>--cgroup-parent</c>); a killed host never deletes them. Removes every such tree, innermost first.
    /// </summary>
    private Task RemoveContainerCgroupsAsync()
    {
        foreach (var parent in ContainerCgroups(Id))
        {
            // A cgroup directory goes with rmdir (its files are not removable), innermost first.
            foreach (var sub in Directory.EnumerateDirectories(parent, "*", SearchOption.AllDirectories).OrderByDescending(d => d.Length).Append(parent))
            {
                if (rmdir(sub) != 0 && Marshal.GetLastPInvokeError() is var errno && errno != 2 /* ENOENT */)
                    _cleanupErrors.Add($"cgroup {sub} (errno {errno})");
            }
        }
        return Task.CompletedTask;
    }

    /// <summary>The hosts' cgroup parents of cluster <paramref name="id"/> in every hierarchy (<c>/sys/fs/cgroup[/&lt;controller&gt;]/flotilla-&lt;id&gt;-h&lt;i&gt;</c>).</summary>
    private static IEnumerable<string> ContainerCgroups(string id)
    {
        if (!Directory.Exists("/sys/fs/cgroup")) return [];
        var prefix = $"flotilla-{id}-h";
        return Directory.EnumerateDirectories("/sys/fs/cgroup").Append("/sys/fs/cgroup")
            .SelectMany(h => Directory.EnumerateDirectories(h, prefix + "*")).ToList();
    }

    /// <summary>After <see cref="DisposeAsync"/>: whatever the teardown could not remove (empty when it left nothing).</summary>
    public IReadOnlyList<string> Leftovers { get; private set; } = [];

    private async Task Try(Func<Task> step, string what)
    {
        try
        {
            await step();
        }
        catch (Exception e)
        {
            _cleanupErrors.Add($"{what}: {e.Message}");
        }
    }

    private static void RemoveTree(string root)
    {
        var mounts = File.ReadLines("/proc/self/mountinfo").Select(l => l.Split(' ')[4])
            .Where(m => m == root || m.StartsWith(root + "/", StringComparison.Ordinal)).OrderByDescending(m => m.Length).ToList();
        foreach (var m in mounts) umount2(m, 2 /* MNT_DETACH */);
        if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
    }

    // ---------------------------------------------------------------- helpers

    internal void TraceLine(string line) => _options.Trace?.Invoke(line);

    internal static Task<CommandResult> Ip(CancellationToken ct, params string[] args) => Run(ct, "ip", args);

    internal static async Task<CommandResult> Run(CancellationToken ct, string file, params string[] args)
    {
        var result = await Command.RunAsync(file, args, ct);
        if (result.ExitCode != 0)
            throw new InvalidOperationException($"{file} {string.Join(' ', args)}: exit {result.ExitCode}: {result.Stderr.Trim()} {result.Stdout.Trim()}");
        return result;
    }

    private static IEnumerable<string> Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static string RandomHex() => Convert.ToHexString(RandomNumberGenerator6()).ToLowerInvariant();

    private static byte[] RandomNumberGenerator6() => System.Security.Cryptography.RandomNumberGenerator.GetBytes(3);

    /// <summary>A 10.x.y.0/24 that no address or route on this machine touches.</summary>
    private static async Task<string> FreeSubnetAsync(CancellationToken ct)
    {
        var addresses = (await Run(ct, "ip", "-4", "-o", "addr", "show")).Stdout;
        var routes = (await Run(ct, "ip", "-4", "route", "show", "table", "all")).Stdout;
        for (var attempt = 0; attempt < 100; attempt++)
        {
            var subnet = $"10.{Random.Shared.Next(100, 250)}.{Random.Shared.Next(0, 256)}";
            var prefix = subnet + ".";
            if (!addresses.Contains(" " + prefix, StringComparison.Ordinal) && !routes.Contains(prefix, StringComparison.Ordinal) &&
                !routes.Contains(subnet + ".0/", StringComparison.Ordinal))
                return subnet;
        }
        throw new InvalidOperationException("no free 10.x.y.0/24 subnet found");
    }

    private static int FreeLoopbackPort() => FreePort(IPAddress.Loopback);

    private static int FreePort(IPAddress address)
    {
        using var listener = new TcpListener(address, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static string? Which(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").Split(':')
        .Concat(["/usr/sbin", "/sbin"]).Select(d => Path.Combine(d, tool)).FirstOrDefault(File.Exists);

#pragma warning disable SYSLIB1054 // plain libc calls
    [DllImport("libc")]
    private static extern uint geteuid();

    [DllImport("libc", SetLastError = true)]
    private static extern int rmdir(string path);

    [DllImport("libc", SetLastError = true)]
    private static extern int umount2(string target, int flags);
#pragma warning restore SYSLIB1054
}

/// <summary>
/// One host of a <see cref="NetnsCluster"/>: network namespace <c>flt&lt;id&gt;-h&lt;i&gt;</c>, a PID and mount namespace
/// whose PID 1 is <c>tini</c> (the host's init: it reaps orphans and stays), and the engine, <c>flotilla node</c>,
/// started into those namespaces by <c>nsenter</c>. Killing the engine leaves conmon and the containers (and any detached
/// child of the engine) running under the init; killing the init is a host crash.
/// </summary>
public sealed class NetnsHost
{
    private readonly NetnsCluster _cluster;
    private ManagedProcess? _init;
    private ManagedProcess? _engine;
    private bool _namespaceCreated;
    private bool _clusterTrafficCut;

    internal NetnsHost(NetnsCluster cluster, int index)
    {
        _cluster = cluster;
        Index = index;
    }

    public int Index { get; }
    public string Name => $"h{Index}";
    public string Namespace => $"flt{_cluster.Id}-h{Index}";

    /// <summary>The bridge side of the host's veth pair (inside, it is <c>eth0</c>); down = partitioned.</summary>
    public string Veth => $"flt{_cluster.Id}h{Index}";
    public string Address => $"{_cluster.Subnet}.{10 + Index}";
    public string ApiEndpoint => $"{Address}:2376";

    /// <summary>The host's data dir; inside the host it is the only directory under the cluster root.</summary>
    public string DataDirectory => Path.Combine(_cluster.Root, Name);

    /// <summary><c>--cgroup-parent</c> of the host's engine: its containers are the cgroups <c>/flotilla-&lt;id&gt;-h&lt;i&gt;/&lt;container id&gt;</c>.</summary>
    public string CgroupParent => $"/flotilla-{_cluster.Id}-h{Index}";

    /// <summary>Whether the host is up (its init runs), whatever its engine does.</summary>
    public bool IsRunning => _init is { HasExited: false } && InitPid is not null;

    /// <summary>Whether the host's engine (<c>flotilla node</c>) runs.</summary>
    public bool EngineRunning => _engine is { HasExited: false };

    /// <summary>PID (root namespace) of the host's <c>unshare</c>, the parent of its init.</summary>
    public int? UnsharePid => _init is { HasExited: false } init ? init.Pid : null;

    /// <summary>PID (root namespace) of the host's init (<c>tini</c>, PID 1 inside); null when the host is down.</summary>
    public int? InitPid
    {
        get
        {
            if (_init is not { HasExited: false } init) return null;
            try
            {
                var children = File.ReadAllText($"/proc/{init.Pid}/task/{init.Pid}/children").Trim();
                return int.TryParse(children.Split(' ')[0], out var pid) ? pid : null;
            }
            catch (IOException)
            {
                return null;
            }
        }
    }

    /// <summary>PID (root namespace) of the engine, <c>dotnet flotilla.dll node</c> (the child of its <c>nsenter</c>); null when it does not run.</summary>
    public int? EnginePid
    {
        get
        {
            if (_engine is not { HasExited: false } engine) return null;
            try
            {
                var children = File.ReadAllText($"/proc/{engine.Pid}/task/{engine.Pid}/children").Trim();
                return int.TryParse(children.Split(' ')[0], out var pid) ? pid : null;
            }
            catch (IOException)
            {
                return null;
            }
        }
    }

    /// <summary>
    /// Every live process of the host (root-namespace PIDs): the init and all below it (orphans such as conmon or a
    /// detached child of the engine are reparented to it), the engine and all below it. Not the harness's wrappers in the
    /// root namespace (<c>unshare</c>, the engine's <c>nsenter</c>).
    /// </summary>
    public IReadOnlyList<int> ProcessIds()
    {
        var members = new List<ProcessTree.ProcessId>();
        if (InitPid is { } init) members.AddRange(ProcessTree.Descendants(init));
        if (EnginePid is { } engine) members.AddRange(ProcessTree.Descendants(engine));
        return members.Where(ProcessTree.IsAlive).Select(p => p.Pid).Distinct().ToList();
    }

    private List<ProcessTree.ProcessId> Members()
    {
        var members = new List<ProcessTree.ProcessId>();
        // Orphans (conmon, a detached child of the engine) are reparented to the init, so the two trees hold them all.
        if (_init is { HasExited: false } init) members.AddRange(ProcessTree.Descendants(init.Pid));
        if (_engine is { HasExited: false } engine) members.AddRange(ProcessTree.Descendants(engine.Pid));
        return members;
    }

    internal async Task CreateNamespaceAsync(CancellationToken ct)
    {
        await NetnsCluster.Ip(ct, "netns", "add", Namespace);
        _namespaceCreated = true;
        var peer = $"flt{_cluster.Id}p{Index}";
        await NetnsCluster.Ip(ct, "link", "add", Veth, "type", "veth", "peer", "name", peer);
        await NetnsCluster.Ip(ct, "link", "set", peer, "netns", Namespace);
        await NetnsCluster.Ip(ct, "link", "set", Veth, "master", _cluster.Bridge);
        await NetnsCluster.Ip(ct, "link", "set", Veth, "up");
        await NetnsCluster.Ip(ct, "-n", Namespace, "link", "set", peer, "name", "eth0");
        await NetnsCluster.Ip(ct, "-n", Namespace, "addr", "add", Address + "/24", "dev", "eth0");
        await NetnsCluster.Ip(ct, "-n", Namespace, "link", "set", "eth0", "up");
        await NetnsCluster.Ip(ct, "-n", Namespace, "link", "set", "lo", "up");
    }

    /// <summary>Boots the host: its init, its own view of the files, then its engine (not waiting for it to be up).</summary>
    internal async Task StartAsync(CancellationToken ct)
    {
        await StartInitAsync(ct);
        StartEngine();
    }

    private async Task StartInitAsync(CancellationToken ct)
    {
        Directory.CreateDirectory(DataDirectory);
        // nsenter, not `ip netns exec`: that one remounts /sys for the namespace, which hides /sys/fs/cgroup from runc.
        // --mount-proc: the host's own /proc, so the PIDs the engine and conmon see are the ones /proc shows.
        _init = _cluster.Launch(Name + "-init", "nsenter",
        [
            "--net=/run/netns/" + Namespace, "--", "unshare", "--pid", "--fork", "--kill-child", "--mount", "--propagation", "private",
            "--mount-proc", "tini", "--", "sleep", "infinity",
        ]);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (InitPid is null || !IsInitReady())
        {
            if (_init.HasExited) throw new InvalidOperationException($"the init of {Name} exited ({_init.ExitCode}); log {_init.LogFile}");
            if (DateTime.UtcNow > deadline) throw new InvalidOperationException($"the init of {Name} did not start; log {_init.LogFile}");
            await Task.Delay(20, ct);
        }
        await HideOtherHostsFilesAsync(ct);
    }

    /// <summary>tini has forked its <c>sleep</c>: the namespace is set up (its /proc mounted).</summary>
    private bool IsInitReady() => InitPid is { } pid && File.Exists($"/proc/{pid}/task/{pid}/children") &&
        File.ReadAllText($"/proc/{pid}/task/{pid}/children").Trim().Length > 0;

    /// <summary>
    /// In the host's mount namespace a tmpfs covers the cluster root and only this host's data dir is bound back: the
    /// other hosts', the gateway's and the CA's files are not there, as on separate machines. The shell keeps the data
    /// dir as its working directory across the tmpfs mount, so <c>mount --no-canonicalize --bind .</c> still reaches the
    /// hidden one (canonicalized, "." would become the path, which then names the empty tmpfs).
    /// </summary>
    private async Task HideOtherHostsFilesAsync(CancellationToken ct)
    {
        var script = "set -e; cd \"$1\"; mount -t tmpfs -o mode=0755,size=1m flt-host-view \"$2\"; mkdir -p \"$1\"; mount --no-canonicalize --bind . \"$1\"";
        var result = await Command.RunAsync("nsenter", ["-t", Pid(InitPid!.Value), "--mount", "--", "sh", "-c", script, "sh", DataDirectory, _cluster.Root], ct);
        if (result.ExitCode != 0) throw new InvalidOperationException($"the file view of {Name}: {result}");
    }

    private void StartEngine()
    {
        var init = InitPid ?? throw new InvalidOperationException($"{Name} is down: start the host, not only its engine");
        string[] labels = [.. _cluster.Options.Labels(Index).SelectMany(l => new[] { "--label", l })];
        _engine = _cluster.Launch(Name, "nsenter",
        [
            "-t", Pid(init), "--net", "--pid", "--mount", "--", "dotnet", _cluster.FlotillaDll, "node", "--name", Name,
            "--bind", $"{Address}:{_cluster.Port}", "--join", _cluster.Seeds, "--postgres", _cluster.PostgresConnectionString,
            "--data", DataDirectory, "--api", ApiEndpoint, "--cgroup-parent", CgroupParent, .. _cluster.FailureDetectorFlags, .. labels,
            .. (_cluster.Hosts[0] == this ? _cluster.CaHolderFlags : []),
        ]);
    }

    internal Task WaitUpAsync(CancellationToken ct) =>
        (_engine ?? throw new InvalidOperationException($"{Name} was not started")).WaitForLineAsync(" is up at ", TimeSpan.FromSeconds(90), ct);

    /// <summary>Starts the engine of a running host (after <see cref="KillEngineAsync"/>) and waits until it is up.</summary>
    internal async Task StartEngineAsync(CancellationToken ct)
    {
        if (EngineRunning) throw new InvalidOperationException($"the engine of {Name} already runs");
        StartEngine();
        await WaitUpAsync(ct);
    }

    /// <summary>SIGKILL to the engine process only; returns once it is gone. Conmon and the containers stay.</summary>
    internal async Task KillEngineAsync()
    {
        if (_engine is not { HasExited: false } engine) return;
        if (EnginePid is { } pid) kill(pid, SigKill);
        await engine.WaitForExitAsync(TimeSpan.FromSeconds(30));
    }

    /// <summary>Host crash: SIGKILL to its init (the kernel kills the rest of its PID namespace); returns once no process of it is left.</summary>
    internal async Task KillAsync(CancellationToken ct)
    {
        if (_init is null && _engine is null) return;
        var members = Members();
        if (InitPid is { } init) kill(init, SigKill);
        if (_init is { } unshare) await unshare.KillAsync();
        if (_engine is { } engine) await engine.KillAsync(); // nsenter ends with its child; kill it should it not
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (true)
        {
            var alive = members.Where(ProcessTree.IsAlive).ToList();
            var inNetns = _namespaceCreated ? (await Command.RunAsync("ip", ["netns", "pids", Namespace], ct)).Stdout.Trim() : "";
            if (alive.Count == 0 && inNetns.Length == 0) return;
            if (DateTime.UtcNow > deadline)
                throw new InvalidOperationException($"processes of {Name} survived its kill: {string.Join(' ', alive.Select(p => p.Pid))} {inNetns}");
            await Task.Delay(50, ct);
        }
    }

    /// <summary>
    /// A paused VM: SIGSTOP to every process of the host at once (<c>kill -STOP -1</c> from inside its PID namespace: the
    /// kernel signals them all in one pass, containers' nested namespaces included), then after <paramref name="duration"/>
    /// SIGCONT to all at once. The init is not stopped (nothing can signal a namespace's PID 1 from inside; it only reaps).
    /// </summary>
    internal async Task PauseAsync(TimeSpan duration, CancellationToken ct)
    {
        var init = InitPid ?? throw new InvalidOperationException($"{Name} is down");
        await SignalAllAsync(init, "STOP");
        try
        {
            await Task.Delay(duration, ct);
        }
        finally
        {
            await SignalAllAsync(init, "CONT");
            // nsenter and unshare (root namespace) stop themselves when their child stops (util-linux's
            // continue_as_child); nothing inside reaches them, and a stopped nsenter would never report its engine's exit.
            foreach (var wrapper in new[] { _engine, _init })
                if (wrapper is { HasExited: false }) kill(wrapper.Pid, SigCont);
        }
    }

    private static async Task SignalAllAsync(int init, string signal)
    {
        // The shell that sends it is the one process kill(-1) leaves out; it exits right after.
        var result = await Command.RunAsync("nsenter", ["-t", Pid(init), "--pid", "--", "sh", "-c", $"kill -{signal} -1"], CancellationToken.None);
        if (result.ExitCode != 0) throw new InvalidOperationException($"kill -{signal} -1: {result}");
    }

    /// <summary>
    /// Cuts the host's cluster traffic (every peer, the gateway, the node API, enrollment) with nftables rules in its
    /// network namespace, leaving PostgreSQL on the bridge address reachable; <see cref="HealClusterTrafficAsync"/> undoes it.
    /// </summary>
    internal async Task CutClusterTrafficAsync(CancellationToken ct)
    {
        var subnet = _cluster.Subnet + ".0/24";
        var bridge = _cluster.BridgeAddress;
        var rules = $$"""
            table inet {{PartitionTable}} {
              chain output {
                type filter hook output priority 0; policy accept;
                oifname "lo" accept
                ip daddr {{bridge}} tcp dport {{NetnsCluster.PostgresPort}} accept
                ip daddr {{subnet}} drop
              }
              chain input {
                type filter hook input priority 0; policy accept;
                iifname "lo" accept
                ip saddr {{bridge}} tcp sport {{NetnsCluster.PostgresPort}} accept
                ip saddr {{subnet}} drop
              }
            }
            """;
        var file = Path.Combine(_cluster.Root, $"partition-{Name}.nft");
        await File.WriteAllTextAsync(file, rules, ct);
        await NetnsCluster.Run(ct, "nsenter", "--net=/run/netns/" + Namespace, "--", "nft", "-f", file);
        _clusterTrafficCut = true;
    }

    internal async Task HealClusterTrafficAsync(CancellationToken ct)
    {
        if (!_clusterTrafficCut) return;
        await NetnsCluster.Run(ct, "nsenter", "--net=/run/netns/" + Namespace, "--", "nft", "delete", "table", "inet", PartitionTable);
        _clusterTrafficCut = false;
    }

    private const string PartitionTable = "flotilla_partition";

    /// <summary>Whether the host's own Docker API accepts a TCP connection from the root namespace (over the bridge).</summary>
    public async Task<bool> ReachableAsync(TimeSpan timeout)
    {
        using var client = new TcpClient();
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await client.ConnectAsync(IPAddress.Parse(Address), 2376, cts.Token);
            return true;
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>Runs a command inside the host (its network, PID and mount namespaces: its /proc, its files, its runc state).</summary>
    public async Task<CommandResult> ExecAsync(string file, params string[] args)
    {
        var init = InitPid ?? throw new InvalidOperationException($"{Name} is not running");
        return await Command.RunAsync("nsenter", ["-t", Pid(init), "--net", "--pid", "--mount", "--", file, .. args], CancellationToken.None);
    }

    /// <summary><c>runc list</c> in the host: the containers that really run there, whatever the cluster believes.</summary>
    public async Task<IReadOnlyList<string>> RunningContainerIdsAsync()
    {
        var result = await ExecAsync("runc", "--root", Path.Combine(DataDirectory, "oci"), "list", "--format", "json");
        if (result.ExitCode != 0) throw new InvalidOperationException($"runc list in {Name}: {result}");
        if (string.IsNullOrWhiteSpace(result.Stdout) || result.Stdout.Trim() == "null") return [];
        using var list = System.Text.Json.JsonDocument.Parse(result.Stdout);
        return list.RootElement.EnumerateArray()
            .Where(c => c.GetProperty("status").GetString() == "running")
            .Select(c => c.GetProperty("id").GetString()!).ToList();
    }

    internal async Task DeleteNamespaceAsync()
    {
        if (!_namespaceCreated) return;
        await NetnsCluster.Ip(CancellationToken.None, "netns", "del", Namespace); // takes the veth pair with it
        _namespaceCreated = false;
    }

    private static string Pid(int pid) => pid.ToString(CultureInfo.InvariantCulture);

    private const int SigKill = 9;
    private const int SigCont = 18;

#pragma warning disable SYSLIB1054 // a plain libc call
    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int signal);
#pragma warning restore SYSLIB1054
}

/// <summary>Processes by parent, from <c>/proc</c>; a process is named with its start time so a reused PID is not mistaken for it.</summary>
internal static class ProcessTree
{
    internal readonly record struct ProcessId(int Pid, long StartTicks);

    public static List<ProcessId> Descendants(int root)
    {
        var byParent = new Dictionary<int, List<ProcessId>>();
        var self = default(ProcessId?);
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid) || Stat(pid) is not { } stat) continue;
            var id = new ProcessId(pid, stat.StartTicks);
            if (pid == root) self = id;
            if (!byParent.TryGetValue(stat.Parent, out var children)) byParent[stat.Parent] = children = [];
            children.Add(id);
        }
        var result = new List<ProcessId>();
        if (self is { } s) result.Add(s);
        var queue = new Queue<int>([root]);
        while (queue.TryDequeue(out var parent))
        {
            foreach (var child in byParent.GetValueOrDefault(parent) ?? [])
            {
                result.Add(child);
                queue.Enqueue(child.Pid);
            }
        }
        return result;
    }

    public static bool IsAlive(ProcessId id) => Stat(id.Pid) is { } stat && stat.StartTicks == id.StartTicks && stat.State != 'Z';

    /// <summary>Fields of <c>/proc/PID/stat</c> after the command (which may hold spaces and parentheses).</summary>
    private static (char State, int Parent, long StartTicks)? Stat(int pid)
    {
        try
        {
            var text = File.ReadAllText($"/proc/{pid}/stat");
            var fields = text[(text.LastIndexOf(')') + 2)..].Split(' ');
            return (fields[0][0], int.Parse(fields[1], CultureInfo.InvariantCulture), long.Parse(fields[19], CultureInfo.InvariantCulture));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
            return null;
        }
    }
}

public sealed record CommandResult(int ExitCode, string Stdout, string Stderr)
{
    public override string ToString() => $"exit {ExitCode}\nstdout:\n{Stdout}\nstderr:\n{Stderr}";
}

/// <summary>Runs a short command to completion (2 minutes at most).</summary>
public static class Command
{
    public static async Task<CommandResult> RunAsync(string file, IReadOnlyList<string> args, CancellationToken ct,
        IReadOnlyDictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        using var process = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {file}");
        var stdout = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
        var stderr = process.StandardError.ReadToEndAsync(CancellationToken.None);
        try
        {
            await process.WaitForExitAsync(ct).WaitAsync(TimeSpan.FromMinutes(2), ct);
        }
        catch
        {
            try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            throw;
        }
        return new CommandResult(process.ExitCode, await stdout, await stderr);
    }
}

/// <summary>A long-running process whose output goes to a log file and a bounded in-memory tail.</summary>
internal sealed class ManagedProcess : IDisposable
{
    private const int KeptLines = 2000;
    private readonly Process _process;
    private readonly StreamWriter _log;
    private readonly ConcurrentQueue<string> _lines = new();
    private readonly List<(string Text, TaskCompletionSource Seen)> _waiters = [];
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    private ManagedProcess(string name, string logFile, Process process)
    {
        Name = name;
        LogFile = logFile;
        _process = process;
        _log = new StreamWriter(logFile, append: true) { AutoFlush = true };
    }

    public string Name { get; }
    public string LogFile { get; }
    public int Pid => _process.Id;
    public bool HasExited => _process.HasExited;
    public int? ExitCode => _process.HasExited ? _process.ExitCode : null;
    public IEnumerable<string> Lines => _lines;

    public static ManagedProcess Start(string name, string logFile, string file, IReadOnlyList<string> args)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_gcServer"] = "0";
        // The hosts' logs are kept for diagnosis: Akka's and Flotilla's information lines too (the console default is warnings).
        psi.Environment["FLOTILLA_LOG_LEVEL"] = "information";
        var process = new Process { StartInfo = psi, EnableRaisingEvents = true };
        var managed = new ManagedProcess(name, logFile, process);
        process.OutputDataReceived += (_, e) => managed.OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => managed.OnLine(e.Data);
        process.Exited += (_, _) => managed.OnLine($"<exited {process.ExitCode}>");
        managed.OnLine("$ " + file + " " + string.Join(' ', args));
        process.Start();
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return managed;
    }

    private void OnLine(string? line)
    {
        if (line is null) return;
        var stamped = $"{_clock.Elapsed.TotalSeconds,7:F2} {Name} | {line}";
        _lines.Enqueue(stamped);
        while (_lines.Count > KeptLines) _lines.TryDequeue(out _);
        lock (_log)
        {
            try { _log.WriteLine(stamped); } catch (ObjectDisposedException) { }
        }
        lock (_waiters)
        {
            foreach (var waiter in _waiters.Where(w => line.Contains(w.Text, StringComparison.Ordinal)).ToList())
            {
                waiter.Seen.TrySetResult();
                _waiters.Remove(waiter);
            }
        }
    }

    /// <summary>Waits for a line containing <paramref name="text"/> (printed from now on, or already printed).</summary>
    public async Task WaitForLineAsync(string text, TimeSpan timeout, CancellationToken ct)
    {
        var seen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_waiters)
        {
            if (_lines.Any(l => l.Contains(text, StringComparison.Ordinal))) return;
            _waiters.Add((text, seen));
        }
        var exited = _process.WaitForExitAsync(ct);
        var first = await Task.WhenAny(seen.Task, exited, Task.Delay(timeout, ct));
        if (first == seen.Task) return;
        ct.ThrowIfCancellationRequested();
        throw new InvalidOperationException(first == exited
            ? $"{Name} exited ({_process.ExitCode}) before printing '{text}'; log {LogFile}"
            : $"{Name} did not print '{text}' within {timeout.TotalSeconds:F0} s; log {LogFile}");
    }

    /// <summary>
    /// Waits until the process itself has exited. Not <see cref="Process.WaitForExitAsync(CancellationToken)"/>: that also
    /// waits for the end of its redirected output, which a child that inherited it (conmon, a detached watchdog) holds
    /// open for as long as it lives.
    /// </summary>
    public async Task WaitForExitAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!_process.HasExited)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"{Name} did not exit within {timeout.TotalSeconds:F0} s");
            await Task.Delay(20);
        }
    }

    public async Task KillAsync()
    {
        if (_process.HasExited) return;
        try
        {
            _process.Kill(entireProcessTree: false); // SIGKILL to this process only: for a host's unshare, a crash
        }
        catch (InvalidOperationException)
        {
        }
        await WaitForExitAsync(TimeSpan.FromSeconds(30));
    }

    public void Dispose()
    {
        _process.Dispose();
        lock (_log) _log.Dispose();
    }
}
