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
        var imageConfig = OciJson.Parse<ImageConfigFile>(System.Text.Encoding.UTF8.GetBytes(image.ConfigJson), "image config").Config
            ?? new ContainerConfig();
        var hostConfig = body["HostConfig"] as JsonObject ?? [];

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
        foreach (var bind in Strings(hostConfig["Binds"])) mounts.Add(ParseBind(bind, volumeMount));
        var anonymous = (body["Volumes"] as JsonObject)?.Select(v => v.Key).ToList() ?? [];
        anonymous.AddRange(imageConfig.Volumes?.Keys ?? Enumerable.Empty<string>());
        foreach (var path in anonymous.Distinct().Where(p => mounts.All(m => m.Destination != p)))
        {
            if (!path.StartsWith('/')) throw Invalid($"invalid volume specification: '{path}': mount path must be absolute");
            var anon = volumeMount(Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)));
            mounts.Add(anon with { Destination = path, Type = "volume" });
        }

        var networkMode = hostConfig["NetworkMode"]?.ToString() ?? "default";
        if (networkMode is not ("default" or "bridge" or "none" or "host" or ""))
            throw new OperationRejectedException(RejectionCode.NotFound, $"network {networkMode} not found");

        var stopSignal = body["StopSignal"]?.ToString() ?? imageConfig.StopSignal ?? "SIGTERM";
        var securityOpt = Strings(hostConfig["SecurityOpt"]);
        var workingDir = body["WorkingDir"]?.ToString() is { Length: > 0 } wd ? wd : imageConfig.WorkingDir ?? "";
        if (workingDir.Length > 0 && !workingDir.StartsWith('/'))
            throw Invalid($"the working directory '{workingDir}' is invalid, it needs to be an absolute path");

        var memory = Long(hostConfig["Memory"]);
        if (memory is > 0 and < 6 * 1024 * 1024) throw Invalid("Minimum memory limit allowed is 6MB");
        var nanoCpus = Long(hostConfig["NanoCpus"]);
        if (nanoCpus < 0) throw Invalid("Range of CPUs is from 0.01 to the number of CPUs available");

        // Docker's view of the merged config, for inspect.
        var config = new JsonObject
        {
            ["Hostname"] = body["Hostname"]?.ToString() ?? "",
            ["Domainname"] = body["Domainname"]?.ToString() ?? "",
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
        if (body["StopTimeout"] is { } st) config["StopTimeout"] = st.DeepClone();
        if (body["ExposedPorts"] is { } ports) config["ExposedPorts"] = ports.DeepClone();

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
            StopSignal: stopSignal.StartsWith("SIG", StringComparison.Ordinal) ? stopSignal[3..] : stopSignal,
            StopTimeout: body["StopTimeout"] is { } t && t.GetValueKind() == JsonValueKind.Number ? t.GetValue<int>() : null,
            Mounts: mounts,
            NetworkMode: networkMode is "" or "bridge" ? "default" : networkMode,
            Memory: memory,
            NanoCpus: nanoCpus,
            CpuShares: Long(hostConfig["CpuShares"]),
            PidsLimit: Long(hostConfig["PidsLimit"]),
            RestartPolicy: restart,
            AutoRemove: autoRemove,
            ReadonlyRootfs: Bool(hostConfig["ReadonlyRootfs"]),
            CapAdd: Strings(hostConfig["CapAdd"]),
            CapDrop: Strings(hostConfig["CapDrop"]),
            Privileged: Bool(hostConfig["Privileged"]),
            NoNewPrivileges: securityOpt.Any(o => o is "no-new-privileges" or "no-new-privileges:true" or "no-new-privileges=true"),
            ImageLayers: image.Layers.Select(x => x.DiffId).ToList(),
            ConfigJson: config.ToJsonString(),
            HostConfigJson: hostConfig.ToJsonString())
        { LogSizeMax = LogSizeMaxOf(hostConfig["LogConfig"] as JsonObject) };
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

    public static OperationRejectedException Invalid(string message) => new(RejectionCode.InvalidArgument, message);

    private static RestartPolicy RestartPolicyOf(JsonObject? policy)
    {
        var name = policy?["Name"]?.ToString() ?? "";
        var max = (int)Long(policy?["MaximumRetryCount"]);
        return name switch
        {
            "" or "no" => max > 0 ? throw Invalid($"invalid restart policy: maximum retry count can only be used with 'on-failure'") : RestartPolicy.No,
            "always" or "unless-stopped" => max > 0
                ? throw Invalid("invalid restart policy: maximum retry count can only be used with 'on-failure'")
                : new RestartPolicy(name, 0),
            "on-failure" => max < 0 ? throw Invalid("invalid restart policy: maximum retry count cannot be negative") : new RestartPolicy(name, max),
            _ => throw Invalid($"invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"),
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
        if (source.StartsWith('/'))
        {
            if (!Directory.Exists(source) && !File.Exists(source))
                Directory.CreateDirectory(source); // Docker creates a missing bind source directory.
            return new ContainerMount("bind", source, destination, readOnly, null);
        }
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
