using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Flotilla.Cluster;
using Flotilla.Cluster.Images;
using Flotilla.Contracts;
using Flotilla.Contracts.Containers;
using Flotilla.NodeRuntime.Images;

namespace Flotilla.Gateway.DockerApi;

/// <summary>
/// Turns the body of <c>POST /containers/create</c> (Config fields at the top, <c>HostConfig</c>,
/// <c>NetworkingConfig</c>) and the image's config into a <see cref="ContainerDefinition"/>, with
/// Docker's merge rules and validation messages. The body is untrusted JSON: read leniently, checked strictly.
/// </summary>
public static class ContainerCreateRequest
{
    private const string DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

    public static ContainerDefinition Build(JsonObject body, ImageView image, string imageAsTyped, Func<string, ContainerMount> volumeMount)
    {
        CheckSizes(body, "");
        var hostConfig = body["HostConfig"] as JsonObject ?? [];
        CreateOptionTable.RefuseUnimplemented(body, hostConfig["NetworkMode"]?.ToString() ?? "default");
        var imageConfig = OciJson.Parse<ImageConfigFile>(System.Text.Encoding.UTF8.GetBytes(image.ConfigJson), "image config").Config
            ?? new ContainerConfig();

        var entrypointGiven = body.ContainsKey("Entrypoint") && body["Entrypoint"] is not null;
        var entrypoint = entrypointGiven ? Strings(body["Entrypoint"]) : imageConfig.Entrypoint ?? [];
        var cmd = Strings(body["Cmd"]);
        // Docker: a new entrypoint drops the image's command; otherwise the image's command is the default.
        if (cmd.Count == 0 && !entrypointGiven) cmd = imageConfig.Cmd ?? [];
        if (entrypoint.Count + cmd.Count == 0) throw Invalid("no command specified");

        var env = MergeEnv(imageConfig.Env ?? [], Strings(body["Env"]));
        var labels = new Dictionary<string, string>(imageConfig.Labels ?? []);
        if (body["Labels"] is JsonObject l)
            foreach (var (k, v) in l) labels[k] = v?.ToString() ?? "";

        var restart = RestartPolicyOf(hostConfig["RestartPolicy"] as JsonObject);
        var autoRemove = Bool(hostConfig["AutoRemove"]);
        if (autoRemove && !restart.IsNone) throw Invalid("can't create 'AutoRemove' container with restart policy");

        var mounts = new List<ContainerMount>();
        var binds = Strings(hostConfig["Binds"]);
        foreach (var bind in binds) mounts.Add(ParseBind(bind, volumeMount));
        var tmpfs = CreateHostOptions.Tmpfs(hostConfig["Tmpfs"]);
        var mountsAsGiven = CreateHostOptions.Mounts(hostConfig["Mounts"], volumeMount, mounts, tmpfs);
        var anonymous = (body["Volumes"] as JsonObject)?.Select(v => v.Key).ToList() ?? [];
        anonymous.AddRange(imageConfig.Volumes?.Keys ?? Enumerable.Empty<string>());
        foreach (var path in anonymous.Distinct().Where(p => mounts.All(m => m.Destination != p) && tmpfs.All(t => t.Destination != p)))
        {
            if (!path.StartsWith('/')) throw Invalid($"invalid volume specification: '{path}': mount path must be absolute");
            var anon = volumeMount(Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)));
            mounts.Add(anon with { Destination = path, Type = "volume" });
        }

        // As dockerd, a network that does not exist fails the start, not the create: a 404 here is taken by the
        // CLI for a missing image (it pulls). See ContainerEndpoints.StartAsync.
        var networkMode = hostConfig["NetworkMode"]?.ToString() ?? "default";

        var stopSignal = body["StopSignal"]?.ToString() ?? imageConfig.StopSignal ?? "SIGTERM";
        var securityOpt = Strings(hostConfig["SecurityOpt"]);
        // The only security option Flotilla implements; the others are refused by name.
        var noNewPrivileges = securityOpt.Where(o => o is "no-new-privileges" or "no-new-privileges:true" or "no-new-privileges=true").ToList();
        foreach (var option in securityOpt.Where(o => !noNewPrivileges.Contains(o) && o is not ("no-new-privileges:false" or "no-new-privileges=false")))
            throw Invalid($"HostConfig.SecurityOpt \"{option}\" (--security-opt) is not supported by Flotilla: only no-new-privileges is; refused rather than ignored");
        var ulimits = CreateHostOptions.Ulimits(hostConfig["Ulimits"]);
        var dns = CreateHostOptions.Dns(hostConfig["Dns"]);
        var dnsSearch = CreateHostOptions.DnsWords(hostConfig["DnsSearch"], "search domain");
        var dnsOptions = CreateHostOptions.DnsWords(hostConfig["DnsOptions"], "resolv.conf option");
        var extraHosts = CreateHostOptions.ExtraHosts(hostConfig["ExtraHosts"]);
        var shmSize = CreateHostOptions.ShmSize(hostConfig["ShmSize"]);
        var init = Bool(hostConfig["Init"]);
        var devices = CreateHostOptions.Devices(hostConfig["Devices"]);
        var workingDir = body["WorkingDir"]?.ToString() is { Length: > 0 } wd ? wd : imageConfig.WorkingDir ?? "";
        if (workingDir.Length > 0 && !workingDir.StartsWith('/'))
            throw Invalid($"the working directory '{workingDir}' is invalid, it needs to be an absolute path");

        var healthcheck = MergeHealthcheck(HealthcheckOf(body["Healthcheck"]), ImageHealthcheckOf(imageConfig.Healthcheck));
        var shell = Strings(body["Shell"]) is { Count: > 0 } s ? s : imageConfig.Shell ?? [];

        var memory = Long(hostConfig["Memory"]);
        if (memory is > 0 and < 6 * 1024 * 1024) throw Invalid("Minimum memory limit allowed is 6MB");
        var nanoCpus = Long(hostConfig["NanoCpus"]);
        if (nanoCpus < 0) throw Invalid("Range of CPUs is from 0.01 to the number of CPUs available");

        // Docker's view of the merged config, for inspect.
        var config = new JsonObject
        {
            ["Hostname"] = body["Hostname"]?.ToString() ?? "",
            // Not implemented (no domain name is set in the container), so not stored.
            ["Domainname"] = "",
            ["User"] = body["User"]?.ToString() is { Length: > 0 } u ? u : imageConfig.User ?? "",
            ["AttachStdin"] = Bool(body["AttachStdin"]),
            ["AttachStdout"] = Bool(body["AttachStdout"]),
            ["AttachStderr"] = Bool(body["AttachStderr"]),
            ["Tty"] = Bool(body["Tty"]),
            ["OpenStdin"] = Bool(body["OpenStdin"]),
            ["StdinOnce"] = Bool(body["StdinOnce"]),
            ["Env"] = new JsonArray(env.Select(e => (JsonNode)e).ToArray()),
            ["Cmd"] = new JsonArray(cmd.Select(c => (JsonNode)c).ToArray()),
            ["Image"] = imageAsTyped,
            ["Volumes"] = anonymous.Count == 0 ? null : new JsonObject(anonymous.Distinct().Select(a => KeyValuePair.Create(a, (JsonNode?)new JsonObject()))),
            ["WorkingDir"] = workingDir,
            ["Entrypoint"] = entrypoint.Count == 0 ? null : new JsonArray(entrypoint.Select(c => (JsonNode)c).ToArray()),
            ["Labels"] = new JsonObject(labels.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
            ["StopSignal"] = stopSignal,
        };
        var stopTimeout = body["StopTimeout"] is { } t && t.GetValueKind() == JsonValueKind.Number && t.AsValue().TryGetValue<int>(out var seconds)
            ? seconds
            : (int?)null;
        if (stopTimeout is { } timeout) config["StopTimeout"] = timeout;
        if (healthcheck is not null) config["Healthcheck"] = HealthcheckJson(healthcheck);
        if (shell.Count > 0) config["Shell"] = new JsonArray(shell.Select(c => (JsonNode)c).ToArray());
        if (ExposedPorts(body["ExposedPorts"]) is { } exposed) config["ExposedPorts"] = exposed;
        var storedHostConfig = new StoredHostConfig(binds, networkMode, restart, autoRemove, Bool(hostConfig["Privileged"]),
            Bool(hostConfig["ReadonlyRootfs"]), Strings(hostConfig["CapAdd"]), Strings(hostConfig["CapDrop"]), noNewPrivileges, memory, nanoCpus,
            Long(hostConfig["CpuShares"]), Long(hostConfig["PidsLimit"]), ConsoleSizeOf(hostConfig["ConsoleSize"]))
        {
            Mounts = mountsAsGiven.Count > 0 ? mountsAsGiven : null,
            Tmpfs = hostConfig["Tmpfs"] is JsonObject { Count: > 0 } tmpfsGiven
                ? tmpfsGiven.ToDictionary(kv => kv.Key, kv => kv.Value?.ToString() ?? "")
                : null,
            Init = init ? true : null,
            ShmSize = shmSize,
            Ulimits = ulimits.Select(u => new StoredUlimit(u.Name, u.Hard, u.Soft)).ToList(),
            Dns = dns,
            DnsOptions = dnsOptions,
            DnsSearch = dnsSearch,
            ExtraHosts = extraHosts.Count > 0 ? extraHosts : null,
            Devices = devices.Select(d => new StoredDevice(d.PathOnHost, d.PathInContainer, d.CgroupPermissions)).ToList(),
        };

        return new ContainerDefinition(
            Image: imageAsTyped,
            ImageId: image.ImageId,
            Entrypoint: entrypoint,
            Cmd: cmd,
            Env: env,
            WorkingDir: workingDir,
            User: config["User"]!.ToString(),
            Hostname: config["Hostname"]!.ToString(),
            Tty: Bool(body["Tty"]),
            OpenStdin: Bool(body["OpenStdin"]),
            StdinOnce: Bool(body["StdinOnce"]),
            Labels: labels,
            StopSignal: Signal.TryParse(stopSignal, out var signal) ? signal : throw Invalid($"Invalid signal: {stopSignal}"),
            StopTimeout: stopTimeout,
            Mounts: mounts,
            NetworkMode: networkMode is "" or "bridge" ? "default" : networkMode,
            Memory: memory,
            NanoCpus: nanoCpus,
            CpuShares: storedHostConfig.CpuShares,
            PidsLimit: storedHostConfig.PidsLimit,
            RestartPolicy: restart,
            AutoRemove: autoRemove,
            ReadonlyRootfs: storedHostConfig.ReadonlyRootfs,
            CapAdd: storedHostConfig.CapAdd,
            CapDrop: storedHostConfig.CapDrop,
            Privileged: storedHostConfig.Privileged,
            NoNewPrivileges: noNewPrivileges.Count > 0,
            ImageLayers: image.Layers.Select(x => x.DiffId).ToList(),
            ConfigJson: config.ToJsonString(),
            // What Flotilla understands, never the client's JSON as sent.
            HostConfigJson: storedHostConfig.ToJson())
        {
            LogSizeMax = LogSizeMaxOf(hostConfig["LogConfig"] as JsonObject),
            Tmpfs = tmpfs,
            Init = init,
            ShmSize = shmSize,
            Ulimits = ulimits,
            Dns = dns,
            DnsSearch = dnsSearch,
            DnsOptions = dnsOptions,
            ExtraHosts = extraHosts,
            Devices = devices,
            Healthcheck = healthcheck,
            Shell = shell,
        };
    }

    /// <summary>
    /// The request's <c>Healthcheck</c> (<c>--health-*</c>, <c>--no-healthcheck</c>), checked as dockerd's
    /// <c>validateHealthCheck</c> does; a test kind Flotilla does not run is refused by name. Null when not given.
    /// </summary>
    public static HealthcheckConfig? HealthcheckOf(JsonNode? node)
    {
        if (node is null) return null;
        if (node is not JsonObject o) throw Invalid("invalid Healthcheck: expected an object");
        var check = ReadHealthcheck(o);
        if (check.Test.Count > 0 && check.Test[0] is not ("NONE" or "CMD" or "CMD-SHELL"))
            throw Invalid($"unknown Healthcheck type '{check.Test[0]}': Flotilla runs NONE, CMD and CMD-SHELL");
        foreach (var (name, value) in new[] { ("Interval", check.Interval), ("Timeout", check.Timeout), ("StartPeriod", check.StartPeriod),
                     ("StartInterval", check.StartInterval) })
            if (value != 0 && value < MinimumHealthDuration)
                throw Invalid($"{name} in Healthcheck cannot be less than 1ms");
        if (check.Retries < 0) throw Invalid("Retries in Healthcheck cannot be negative");
        return check;
    }

    /// <summary>Docker's <c>MinimumDuration</c> for healthcheck durations: 1 ms, in nanoseconds.</summary>
    private const long MinimumHealthDuration = 1_000_000;

    /// <summary>The image's HEALTHCHECK, read leniently (an image is not the user's request: an odd kind just probes nothing).</summary>
    private static HealthcheckConfig? ImageHealthcheckOf(JsonElement? element) =>
        element is { ValueKind: JsonValueKind.Object } e && JsonNode.Parse(e.GetRawText()) is JsonObject o ? ReadHealthcheck(o) : null;

    private static HealthcheckConfig ReadHealthcheck(JsonObject o) =>
        new(Strings(o["Test"]), Long(o["Interval"]), Long(o["Timeout"]), Long(o["StartPeriod"]), Long(o["StartInterval"]), (int)Long(o["Retries"]));

    /// <summary>dockerd's merge (daemon/commit.go): the request's fields, each empty one taken from the image's.</summary>
    public static HealthcheckConfig? MergeHealthcheck(HealthcheckConfig? request, HealthcheckConfig? image)
    {
        if (image is null || request is null) return request ?? image;
        return new HealthcheckConfig(
            request.Test.Count > 0 ? request.Test : image.Test,
            request.Interval != 0 ? request.Interval : image.Interval,
            request.Timeout != 0 ? request.Timeout : image.Timeout,
            request.StartPeriod != 0 ? request.StartPeriod : image.StartPeriod,
            request.StartInterval != 0 ? request.StartInterval : image.StartInterval,
            request.Retries != 0 ? request.Retries : image.Retries);
    }

    /// <summary>Docker's JSON of a <c>HealthConfig</c>: every field <c>omitempty</c>, durations in nanoseconds.</summary>
    public static JsonObject HealthcheckJson(HealthcheckConfig h)
    {
        var json = new JsonObject();
        if (h.Test.Count > 0) json["Test"] = new JsonArray(h.Test.Select(t => (JsonNode)t).ToArray());
        if (h.Interval != 0) json["Interval"] = h.Interval;
        if (h.Timeout != 0) json["Timeout"] = h.Timeout;
        if (h.StartPeriod != 0) json["StartPeriod"] = h.StartPeriod;
        if (h.StartInterval != 0) json["StartInterval"] = h.StartInterval;
        if (h.Retries != 0) json["Retries"] = h.Retries;
        return json;
    }

    /// <summary>
    /// <c>--log-driver</c>/<c>--log-opt</c>: json-file only (conmon's k8s-file underneath, read back as json-file would
    /// be), with <c>max-size</c> and <c>max-file=1</c>; anything else is refused by name rather than ignored.
    /// </summary>
    public static long LogSizeMaxOf(JsonObject? logConfig)
    {
        var type = logConfig?["Type"]?.ToString() ?? "";
        if (type is not ("" or "json-file"))
            throw Invalid($"log driver {type} is not supported by Flotilla: containers log with json-file only");
        long size = 0;
        foreach (var (key, value) in logConfig?["Config"] as JsonObject ?? [])
        {
            var text = value?.ToString() ?? "";
            switch (key)
            {
                case "max-size":
                    size = ParseSize(text);
                    break;
                case "max-file":
                    if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var files) || files < 1)
                        throw Invalid($"invalid value for max-file: {text}");
                    if (files > 1)
                        throw Invalid($"log opt max-file={text} is not supported by Flotilla: a run keeps one log file, emptied when it reaches max-size (max-file=1)");
                    break;
                default:
                    throw Invalid($"unknown log opt '{key}' for json-file log driver");
            }
        }
        return size;
    }

    /// <summary>Docker's size units (<c>units.RAMInBytes</c>): bytes, or k/m/g with an optional b, powers of 1024.</summary>
    private static long ParseSize(string text)
    {
        var t = text.Trim().ToLowerInvariant();
        if (t.EndsWith('b')) t = t[..^1];
        long unit = 1;
        if (t.Length > 0 && t[^1] is 'k' or 'm' or 'g' or 't')
        {
            unit = t[^1] switch { 'k' => 1L << 10, 'm' => 1L << 20, 'g' => 1L << 30, _ => 1L << 40 };
            t = t[..^1];
        }
        if (!decimal.TryParse(t, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var n) || n <= 0)
            throw Invalid($"invalid value for max-size: {text}");
        return (long)(n * unit);
    }

    /// <summary>The network modes Flotilla has (no user-defined networks yet).</summary>
    public static bool IsKnownNetworkMode(string mode) => mode is "default" or "bridge" or "none" or "host" or "";

    public static OperationRejectedException Invalid(string message) => new(RejectionCode.InvalidArgument, message);

    /// <summary>
    /// The longest string a create may hold: the kernel's MAX_ARG_STRLEN (one argument or environment entry), so
    /// nothing longer could be used to start the container anyway.
    /// </summary>
    public const int MaxStringBytes = 128 * 1024;

    /// <summary>The most items of one array or object (environment, command, labels, binds…).</summary>
    public const int MaxItems = 4096;

    /// <summary>Refuses a string or collection anywhere in the body that is larger than any real create needs.</summary>
    private static void CheckSizes(JsonNode? node, string path)
    {
        switch (node)
        {
            case JsonObject o:
                if (o.Count > MaxItems) throw Invalid($"{Field(path)} has {o.Count} entries; the limit is {MaxItems}");
                foreach (var (name, value) in o)
                {
                    if (name.Length > MaxStringBytes) throw Invalid($"a key of {Field(path)} is {name.Length} characters long; the limit is {MaxStringBytes}");
                    CheckSizes(value, path.Length == 0 ? name : $"{path}.{name}");
                }
                break;
            case JsonArray a:
                if (a.Count > MaxItems) throw Invalid($"{Field(path)} has {a.Count} entries; the limit is {MaxItems}");
                for (var i = 0; i < a.Count; i++) CheckSizes(a[i], $"{path}[{i}]");
                break;
            case JsonValue v when v.GetValueKind() == JsonValueKind.String:
                var bytes = System.Text.Encoding.UTF8.GetByteCount(v.GetValue<string>());
                if (bytes > MaxStringBytes) throw Invalid($"{Field(path)} is {bytes} bytes long; the limit is {MaxStringBytes}");
                break;
        }
    }

    private static string Field(string path) => path.Length == 0 ? "the request" : path.Length > 200 ? path[..200] + "…" : path;

    /// <summary><c>ExposedPorts</c> as Docker keeps it (<c>{"80/tcp": {}}</c>): metadata for inspect, checked and rebuilt.</summary>
    private static JsonObject? ExposedPorts(JsonNode? node)
    {
        if (node is not JsonObject ports || ports.Count == 0) return null;
        var result = new JsonObject();
        foreach (var (key, _) in ports)
        {
            var slash = key.IndexOf('/');
            var (number, proto) = slash < 0 ? (key, "tcp") : (key[..slash], key[(slash + 1)..]);
            if (!ushort.TryParse(number, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port) || port == 0 ||
                proto is not ("tcp" or "udp" or "sctp"))
                throw Invalid($"invalid port specification: \"{key}\"");
            result[$"{port}/{proto}"] = new JsonObject();
        }
        return result;
    }

    /// <summary><c>HostConfig.ConsoleSize</c>: [rows, columns], each 0…65535 (the CLI sends [0, 0] without a TTY).</summary>
    private static IReadOnlyList<int> ConsoleSizeOf(JsonNode? node) =>
        node is JsonArray { Count: 2 } size && size[0] is JsonValue r && r.TryGetValue<int>(out var rows) && size[1] is JsonValue c &&
        c.TryGetValue<int>(out var columns) && rows is >= 0 and <= ushort.MaxValue && columns is >= 0 and <= ushort.MaxValue
            ? [rows, columns]
            : [0, 0];

    private static RestartPolicy RestartPolicyOf(JsonObject? policy)
    {
        var word = policy?["Name"]?.ToString() ?? "";
        var max = (int)Long(policy?["MaximumRetryCount"]);
        if (!DockerWords.TryParseRestartPolicy(word, out var name))
            throw Invalid($"invalid restart policy: unknown policy '{word}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'");
        return name switch
        {
            RestartPolicyName.No => max > 0 ? throw Invalid($"invalid restart policy: maximum retry count can only be used with 'on-failure'") : RestartPolicy.No,
            RestartPolicyName.OnFailure => max < 0 ? throw Invalid("invalid restart policy: maximum retry count cannot be negative") : new RestartPolicy(name, max),
            _ => max > 0 ? throw Invalid("invalid restart policy: maximum retry count can only be used with 'on-failure'") : new RestartPolicy(name, 0),
        };
    }

    /// <summary><c>/host:/ctr[:ro|rw]</c> is a bind; <c>name:/ctr</c> a named volume.</summary>
    private static ContainerMount ParseBind(string bind, Func<string, ContainerMount> volumeMount)
    {
        var parts = bind.Split(':');
        if (parts.Length is < 2 or > 3) throw Invalid($"invalid volume specification: '{bind}'");
        var (source, destination) = (parts[0], parts[1]);
        var mode = parts.Length == 3 ? parts[2] : "rw";
        if (mode.Split(',').Any(m => m is not ("ro" or "rw" or "z" or "Z" or "rprivate" or "private" or "rshared" or "shared" or "rslave" or "slave" or "nocopy")))
            throw Invalid($"invalid mode: {mode}");
        if (!destination.StartsWith('/')) throw Invalid($"invalid volume specification: '{bind}': invalid mount config: mount path must be absolute");
        if (destination == "/") throw Invalid($"invalid volume specification: '{bind}': invalid mount config: destination can't be '/'");
        var readOnly = mode.Split(',').Contains("ro");
        var propagation = mode.Split(',').LastOrDefault(m => m.EndsWith("private", StringComparison.Ordinal) ||
                                                            m.EndsWith("shared", StringComparison.Ordinal) || m.EndsWith("slave", StringComparison.Ordinal)) ?? "";
        // A missing bind source directory is made, as Docker does, by the node that runs the container when it starts
        // (NodeContainerRuntime): never here, where the request came in.
        if (source.StartsWith('/')) return new ContainerMount("bind", source, destination, readOnly, null) { Propagation = propagation };
        if (propagation.Length > 0) throw Invalid($"invalid volume specification: '{bind}': propagation applies to bind mounts only");
        if (!Cluster.Containers.ContainerNames.IsValid(source))
            throw Invalid($"create {source}: \"{source}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path");
        return volumeMount(source) with { Destination = destination, ReadOnly = readOnly };
    }

    private static List<string> MergeEnv(IEnumerable<string> image, IEnumerable<string> request)
    {
        var result = new List<string>();
        foreach (var e in image.Concat(request))
        {
            var key = e.Split('=', 2)[0];
            result.RemoveAll(x => x.Split('=', 2)[0] == key);
            result.Add(e);
        }
        if (!result.Any(e => e.StartsWith("PATH=", StringComparison.Ordinal))) result.Insert(0, DefaultPath);
        return result;
    }

    public static List<string> Strings(JsonNode? node) => node switch
    {
        JsonArray a => a.Select(x => x?.ToString() ?? "").ToList(),
        JsonValue v when v.GetValueKind() == JsonValueKind.String => [v.GetValue<string>()],
        _ => [],
    };

    public static bool Bool(JsonNode? node) => node is JsonValue v && v.GetValueKind() == JsonValueKind.True;

    public static long Long(JsonNode? node) =>
        node is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue<long>(out var n) ? n : 0;
}
