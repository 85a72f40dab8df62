using System.CommandLine;
using Flotilla.Cli.Hosting;
using Flotilla.Cluster.Hosting;
using Flotilla.Cluster.Security;

namespace Flotilla.Cli.Commands;

/// <summary><c>flotilla node</c> and <c>flotilla gateway</c>: one role per process, all sharing one PostgreSQL.</summary>
public static class ClusterCommands
{
    private static Option<string> Bind() =>
        Flags.WithEnv("--bind", "FLOTILLA_BIND", "127.0.0.1:4053", "cluster transport address (IP:PORT)");

    private static Option<string?> Join() =>
        Flags.OptionalWithEnv("--join", "FLOTILLA_JOIN", "seed addresses IP:PORT[,IP:PORT…] (a first node may name itself)");

    private static Option<string?> Postgres() =>
        Flags.OptionalWithEnv("--postgres", "FLOTILLA_POSTGRES", "PostgreSQL connection string shared by the cluster (required)");

    private static Option<string?> StableAfter() =>
        Flags.OptionalWithEnv("--stable-after", "FLOTILLA_STABLE_AFTER", "how long membership must be stable before the split brain resolver downs unreachable members (default 1s; the resolver looks once a second)");

    private static Option<string?> HeartbeatPause() =>
        Flags.OptionalWithEnv("--heartbeat-pause", "FLOTILLA_HEARTBEAT_PAUSE", "silence tolerated before a member is unreachable (default 1500ms; heartbeats every 250ms)");

    /// <summary>The cluster certificate flags every node and gateway takes (see <see cref="ClusterIdentity"/>).</summary>
    private sealed record PkiOptions(Option<string?> TlsCert, Option<string?> TlsKey, Option<string?> TlsCa, Option<string?> CaCert, Option<string?> CaKey,
        Option<string?> JoinToken)
    {
        public static PkiOptions Create() => new(
            Flags.OptionalWithEnv("--tls-cert", "FLOTILLA_TLS_CERT", "this process's cluster certificate (PEM; default <data>/pki/cert.pem)"),
            Flags.OptionalWithEnv("--tls-key", "FLOTILLA_TLS_KEY", "its private key (PEM; default <data>/pki/key.pem)"),
            Flags.OptionalWithEnv("--tls-ca", "FLOTILLA_TLS_CA", "the cluster CA certificate peers must chain to (PEM; default <data>/pki/ca.pem)"),
            Flags.OptionalWithEnv("--cluster-ca-cert", "FLOTILLA_CLUSTER_CA_CERT", "an operator's cluster CA certificate: this process issues its own certificate with it"),
            Flags.OptionalWithEnv("--cluster-ca-key", "FLOTILLA_CLUSTER_CA_KEY", "that CA's private key (PEM)"),
            Flags.OptionalWithEnv("--join-token", "FLOTILLA_JOIN_TOKEN", "join token ('flotilla cluster join-token' on the CA holder): a first start without a certificate gets one from a seed"));

        public IEnumerable<Option> All => [TlsCert, TlsKey, TlsCa, CaCert, CaKey, JoinToken];

        public ClusterPkiFlags Read(ParseResult result) => new(result.GetValue(TlsCert), result.GetValue(TlsKey), result.GetValue(TlsCa),
            result.GetValue(CaCert), result.GetValue(CaKey), result.GetValue(JoinToken));
    }

    /// <summary>
    /// Failure detection for failover within seconds: heartbeats every 250 ms (the later the last heartbeat before a
    /// crash, the earlier the detector's clock starts), a member is unreachable after ~1.5 s of silence plus the phi
    /// margin, and the resolver downs it at its first tick (once a second) after 1 s more of stable membership. A 1 s
    /// blip can still reach "unreachable" (TCP's retransmission backoff stretches the silence to ~2 s), so the resolver's
    /// wait is what keeps it from moving anything: 500 ms was seen to down a host after a 1 s blip.
    /// </summary>
    private static ProcessSettings WithFailureDetector(ProcessSettings settings, ParseResult result, Option<string?> stableAfter, Option<string?> pause) =>
        settings with
        {
            StableAfter = ParseDuration(result.GetValue(stableAfter), "--stable-after") ?? TimeSpan.FromSeconds(1),
            AcceptableHeartbeatPause = ParseDuration(result.GetValue(pause), "--heartbeat-pause") ?? TimeSpan.FromMilliseconds(1500),
            HeartbeatInterval = TimeSpan.FromMilliseconds(250),
        };

    public static Command Node()
    {
        var name = Flags.OptionalWithEnv("--name", "FLOTILLA_NODE_NAME", "node name (default: hostname)");
        var bind = Bind();
        var join = Join();
        var postgres = Postgres();
        var postgresFile = Flags.PostgresFile();
        var data = Flags.WithEnv("--data", "FLOTILLA_DATA", "/var/lib/flotilla", "data directory");
        var api = Flags.OptionalWithEnv("--api", "FLOTILLA_NODE_API", "this node's API for gateways (its containers' streams) and peers (image blobs): HTTPS with required cluster client certificates (default: bind IP, port 2376)");
        var enroll = Flags.OptionalWithEnv("--enroll", "FLOTILLA_ENROLL", "where a node that holds the cluster CA key answers join-token enrollments (HTTPS; default: bind IP, port 2378; 'none': not at all)");
        var insecureApi = new Option<bool>("--insecure-node-api") { Description = "serve the node API in plain HTTP without client certificates (anyone who reaches it is root on this host)" };
        var labels = new Option<string[]>("--label") { Description = "node label k=v (repeatable), for placement constraints", AllowMultipleArgumentsPerToken = false };
        var runtime = Flags.OptionalWithEnv("--runtime", "FLOTILLA_RUNTIME", "OCI runtime: runc or crun (default: the one that works here)");
        var cgroupParent = Flags.WithEnv("--cgroup-parent", "FLOTILLA_CGROUP_PARENT", Flotilla.NodeRuntime.Oci.CgroupParents.Default,
            "cgroup the containers of this host go under (one per host sharing a kernel)");
        var stableAfter = StableAfter();
        var pause = HeartbeatPause();
        var pki = PkiOptions.Create();
        var logLevel = Flags.LogLevel();
        var command = new Command("node", "Run a Flotilla host: container runtime and cluster shards (or drain/activate one)")
        {
            name, bind, join, postgres, postgresFile, data, api, insecureApi, enroll, labels, runtime, cgroupParent, stableAfter, pause, logLevel,
            Availability("drain", "Move every container off a node and place nothing new on it"),
            Availability("activate", "Let a drained node take containers again"),
        };
        foreach (var option in pki.All) command.Options.Add(option);
        command.SetAction((result, cancellationToken) => WithCertificateErrors("flotilla node", async () =>
        {
            if (PostgresOf(result, postgres, postgresFile, "node") is not { } connectionString) return 2;
            string cgroups;
            Microsoft.Extensions.Logging.LogLevel level;
            try
            {
                cgroups = Flotilla.NodeRuntime.Oci.CgroupParents.Validate(result.GetValue(cgroupParent)!);
                level = ConsoleLogging.Parse(result.GetValue(logLevel)!);
            }
            catch (ArgumentException ex)
            {
                return Fail($"flotilla node: {ex.Message}");
            }
            var (bindHost, bindPort) = ParseBind(result.GetValue(bind)!);
            var nodeName = result.GetValue(name) ?? Environment.MachineName;
            var dataRoot = Path.GetFullPath(result.GetValue(data)!);
            var nodeApi = PeerReachable(Endpoints.Parse(result.GetValue(api) ?? $"{bindHost}:2376", "--api"), bindHost,
                "gateways reach this node's containers and peers fetch its image blobs there");
            var seeds = ParseJoin(result.GetValue(join));
            var settings = new ProcessSettings
            {
                NodeName = nodeName,
                Roles = [FlotillaClusterOptions.NodeRole],
                DataRoot = dataRoot,
                DockerApi = nodeApi,
                BindHost = bindHost,
                BindPort = bindPort,
                Seeds = seeds,
                Tls = await ClusterIdentity.ResolveAsync(dataRoot, ClusterRole.Node, nodeName, [bindHost, nodeApi.Address.ToString()],
                    Founding(seeds, bindHost, bindPort), pki.Read(result), EnrollAt(seeds), Console.WriteLine, cancellationToken),
                InsecureNodeApi = result.GetValue(insecureApi),
                Labels = ParseLabels(result.GetValue(labels) ?? []),
                HandsOverContainers = true,
                CgroupParent = cgroups,
                LogLevel = level,
            };
            settings = WithFailureDetector(settings, result, stableAfter, pause);
            if (result.GetValue(enroll) is not "none" && ClusterIdentity.HeldCa(dataRoot, pki.Read(result)) is { } ca)
            {
                // The secret lives next to the CA key, so every holder of that key (and 'cluster join-token') has the same one.
                var caKey = pki.Read(result).CaKey;
                var secretDirectory = caKey is null ? ClusterPkiFiles.In(dataRoot) : Path.GetDirectoryName(Path.GetFullPath(caKey))!;
                var token = JoinToken.Issue(ca, JoinSecret.LoadOrCreate(secretDirectory), JoinToken.DefaultTtl, DateTimeOffset.UtcNow);
                var endpoint = Endpoints.Parse(result.GetValue(enroll) ?? $"{bindHost}:{Enrollment.DefaultPort}", "--enroll");
                settings = settings with { Enrollment = new Flotilla.Gateway.Http.EnrollmentOptions(endpoint, ca, secretDirectory, settings.Tls!) };
                Console.WriteLine($"This node holds the cluster CA; others join with --join-token {token} until {token.Expires:u} " +
                                  $"(enrollment on https://{endpoint}; more: flotilla cluster join-token)");
            }
            if (settings.InsecureNodeApi && !System.Net.IPAddress.IsLoopback(nodeApi.Address))
                // dockerd's words for the same mistake (its -H tcp:// without --tlsverify).
                Console.Error.WriteLine($"WARNING: Binding to IP address without --tlsverify is insecure and gives root access on this machine to everyone who has access to your network. (--insecure-node-api on {nodeApi})");
            return await ClusterProcessHost.RunAsync(settings, connectionString, result.GetValue(runtime), cancellationToken);
        }));
        return command;
    }

    public static Command Gateway()
    {
        var name = Flags.OptionalWithEnv("--name", "FLOTILLA_GATEWAY_NAME", "gateway name (default: gateway-<hostname>)");
        var bind = Bind();
        var join = Join();
        var postgres = Postgres();
        var postgresFile = Flags.PostgresFile();
        var listeners = new ClientListenerFlags();
        var data = Flags.WithEnv("--data", "FLOTILLA_DATA", "/var/lib/flotilla-gateway", "data directory (images imported through this gateway, registry blobs)");
        var dockerApi = Flags.WithEnv("--docker-api", "FLOTILLA_DOCKER_API", "127.0.0.1:2375", "Docker Engine API listen address ('none': the unix socket only); use --tlsverify off loopback");
        var registry = Flags.WithEnv("--registry", "FLOTILLA_REGISTRY", "127.0.0.1:5000", "registry listen address ('none' for no registry)");
        var http = Flags.Http();
        var dockerSocket = Flags.WithEnv("--docker-socket", "FLOTILLA_DOCKER_SOCKET", "none", "Docker API unix socket too ('none': no socket)");
        var anonymousPull = Flags.WithEnv("--registry-anonymous-pull", "FLOTILLA_REGISTRY_ANONYMOUS_PULL", "auto",
            "may anyone pull from the registry without logging in once users exist: auto (yes on loopback), true, false");
        var realm = Flags.OptionalWithEnv("--registry-realm", "FLOTILLA_REGISTRY_REALM",
            "token realm URL the registry announces (default: http://<registry listen address>/token; set it behind a proxy or DNS name)");
        var insecureRegistries = Flags.InsecureRegistry();
        var peerApi = Flags.OptionalWithEnv("--api", "FLOTILLA_GATEWAY_API", "where nodes fetch image blobs imported through this gateway: HTTPS with required cluster client certificates (default: bind IP, port 2377; 'none': no listener)");
        var stableAfter = StableAfter();
        var pause = HeartbeatPause();
        var pki = PkiOptions.Create();
        var logLevel = Flags.LogLevel();
        var command = new Command("gateway", "Run a Flotilla gateway: the Docker API and registry for the whole cluster")
        {
            name, bind, join, postgres, postgresFile, data, dockerApi, registry, http, dockerSocket, anonymousPull, realm, insecureRegistries, peerApi, stableAfter, pause, logLevel,
        };
        foreach (var option in listeners.All) command.Options.Add(option);
        foreach (var option in pki.All) command.Options.Add(option);
        command.SetAction((result, cancellationToken) => WithCertificateErrors("flotilla gateway", async () =>
        {
            if (PostgresOf(result, postgres, postgresFile, "gateway") is not { } connectionString) return 2;
            Gateway.Listeners.ClientTls? tls;
            Microsoft.Extensions.Logging.LogLevel level;
            try
            {
                tls = listeners.ParseTls(result);
                level = ConsoleLogging.Parse(result.GetValue(logLevel)!);
            }
            catch (ArgumentException ex)
            {
                return Fail($"flotilla gateway: {ex.Message}");
            }
            if (result.GetValue(join) is null) return Fail("flotilla gateway: --join is required (a gateway runs no shards and needs nodes)");
            var (bindHost, bindPort) = ParseBind(result.GetValue(bind)!);
            var registryText = result.GetValue(registry)!;
            var registryEndpoint = registryText is "none" or "" ? null : Endpoints.Parse(registryText, "--registry");
            var nativeEndpoint = Endpoints.Parse(result.GetValue(http)!, "--http");
            // Before anything else (certificates, the database): a usage error says so at once.
            PlainTcpWarning.RequireTlsBeyondLoopback([("--registry", registryEndpoint), ("--http", nativeEndpoint)], tls is not null,
                listeners.PlainExplicitly(result));
            var socket = result.GetValue(dockerSocket);
            var gatewayName = result.GetValue(name) ?? "gateway-" + Environment.MachineName;
            var dataRoot = Path.GetFullPath(result.GetValue(data)!);
            var gatewayPeerApi = result.GetValue(peerApi) is "none" ? null
                : PeerReachable(Endpoints.Parse(result.GetValue(peerApi) ?? $"{bindHost}:2377", "--api"), bindHost,
                    "nodes fetch the images imported, loaded or pulled through this gateway there");
            var settings = new ProcessSettings
            {
                NodeName = gatewayName,
                Roles = [FlotillaClusterOptions.GatewayRole],
                DataRoot = dataRoot,
                Tls = await ClusterIdentity.ResolveAsync(dataRoot, ClusterRole.Gateway, gatewayName, [bindHost], founding: false, pki.Read(result),
                    EnrollAt(ParseJoin(result.GetValue(join))), Console.WriteLine, cancellationToken),
                PeerApi = gatewayPeerApi,
                DockerApi = result.GetValue(dockerApi) is "none" or "" ? null : Endpoints.Parse(result.GetValue(dockerApi)!, "--docker-api"),
                NativeApi = nativeEndpoint,
                Registry = registryEndpoint,
                DockerSocket = socket is "none" or "" ? null : socket,
                RegistryAnonymousPull = result.GetValue(anonymousPull)!,
                RegistryRealm = result.GetValue(realm),
                InsecureRegistries = ProcessSettings.ParseInsecureRegistries(result.GetValue(insecureRegistries) ?? []),
                BindHost = bindHost,
                BindPort = bindPort,
                Seeds = ParseJoin(result.GetValue(join)),
                ClientTls = tls,
                Browsers = listeners.Browsers(result),
                LogLevel = level,
            };
            settings = WithFailureDetector(settings, result, stableAfter, pause);
            if (tls is not { VerifyClients: true } && settings.DockerApi is { } tcpApi)
                await PlainTcpWarning.WarnAsync(tcpApi, listeners.PlainExplicitly(result), cancellationToken);
            return await ClusterProcessHost.RunAsync(settings, connectionString, null, cancellationToken);
        }));
        return command;
    }

    /// <summary>Where a joiner with a token asks for its certificate: each seed's IP on the enrollment port.</summary>
    private static IEnumerable<Uri> EnrollAt(IReadOnlyList<string> seeds) =>
        seeds.Select(s => Endpoints.Parse(s, "--join")).Select(e => new Uri($"https://{new System.Net.IPEndPoint(e.Address, Enrollment.DefaultPort)}"));

    /// <summary>A process founds the cluster when it joins nobody but itself (a first node may name itself in --join).</summary>
    private static bool Founding(IReadOnlyList<string> seeds, string bindHost, int bindPort) =>
        seeds.Count == 0 || (seeds.Count == 1 && seeds[0] == Endpoints.Parse($"{bindHost}:{bindPort}", "--bind").ToString());

    private static Command Availability(string verb, string description)
    {
        var http = Flags.Http();
        var node = new Argument<string>("name") { Description = "node name" };
        var command = new Command(verb, description) { node, http };
        command.SetAction(async (result, cancellationToken) =>
        {
            using var api = new NativeApi(result.GetValue(http)!);
            using var response = await api.SendAsync(HttpMethod.Post, $"api/nodes/{Uri.EscapeDataString(result.GetValue(node)!)}/{verb}", null, cancellationToken);
            if (response is null) return 1;
            Console.WriteLine(result.GetValue(node));
            return 0;
        });
        return command;
    }

    private static string? PostgresOf(ParseResult result, Option<string?> postgres, Option<string?> postgresFile, string role)
    {
        try
        {
            if (Flags.Postgres(result.GetValue(postgres), result.GetValue(postgresFile)) is { } connectionString) return connectionString;
            Fail($"flotilla {role}: --postgres or --postgres-file is required");
        }
        catch (ArgumentException ex)
        {
            Fail($"flotilla {role}: {ex.Message}");
        }
        return null;
    }

    /// <summary>A certificate that is missing, wrong, or could not be had with the join token: one line and exit 2, no stack trace.</summary>
    private static async Task<int> WithCertificateErrors(string command, Func<Task<int>> run)
    {
        try
        {
            return await run();
        }
        catch (Exception e) when (e is ArgumentException or InvalidDataException or FormatException or System.Security.Cryptography.CryptographicException
                                      || (e is InvalidOperationException && e.Message.StartsWith("could not join", StringComparison.Ordinal)))
        {
            return Fail($"{command}: {e.Message}");
        }
    }

    private static int Fail(string message)
    {
        Console.Error.WriteLine(message);
        return 2;
    }

    /// <summary>
    /// An <c>--api</c> that other hosts dial must not be loopback when the cluster address is not: it would be registered
    /// as where this process's content lives, and every other host would dial its own loopback instead.
    /// </summary>
    public static System.Net.IPEndPoint PeerReachable(System.Net.IPEndPoint api, string bindHost, string why)
    {
        if (System.Net.IPAddress.IsLoopback(api.Address) && !System.Net.IPAddress.IsLoopback(System.Net.IPAddress.Parse(bindHost)))
            throw new ArgumentException($"--api {api} is a loopback address, which no other host reaches ({why}); use an address of this host " +
                $"that the others reach, such as the --bind IP ({bindHost})");
        return api;
    }

    public static (string Host, int Port) ParseBind(string text)
    {
        var endpoint = Endpoints.Parse(text, "--bind");
        return (endpoint.Address.ToString(), endpoint.Port);
    }

    public static IReadOnlyList<string> ParseJoin(string? text) =>
        string.IsNullOrWhiteSpace(text)
            ? []
            : text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(s => Endpoints.Parse(s, "--join").ToString()).ToList();

    public static IReadOnlyDictionary<string, string> ParseLabels(IEnumerable<string> labels)
    {
        var result = new Dictionary<string, string>();
        foreach (var label in labels)
        {
            var eq = label.IndexOf('=');
            if (eq <= 0) throw new ArgumentException($"--label: '{label}' is not KEY=VALUE");
            result[label[..eq]] = label[(eq + 1)..];
        }
        return result;
    }

    /// <summary><c>2s</c>, <c>1500ms</c>, <c>1m</c>, or plain seconds.</summary>
    public static TimeSpan? ParseDuration(string? text, string flag)
    {
        if (string.IsNullOrWhiteSpace(text)) return null;
        var t = text.Trim();
        double Number(string s) => double.TryParse(s, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var v) && v >= 0
            ? v : throw new ArgumentException($"{flag}: '{text}' is not a duration (2s, 1500ms, 1m)");
        if (t.EndsWith("ms", StringComparison.Ordinal)) return TimeSpan.FromMilliseconds(Number(t[..^2]));
        if (t.EndsWith('s')) return TimeSpan.FromSeconds(Number(t[..^1]));
        if (t.EndsWith('m')) return TimeSpan.FromMinutes(Number(t[..^1]));
        return TimeSpan.FromSeconds(Number(t));
    }
}
