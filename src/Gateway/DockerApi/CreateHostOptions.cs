using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Flotilla.Contracts.Containers;
using static Flotilla.Gateway.DockerApi.ContainerCreateRequest;

namespace Flotilla.Gateway.DockerApi;

/// <summary>
/// The <c>HostConfig</c> options that shape the container's file systems, limits and name resolution
/// (<c>Mounts</c>, <c>Tmpfs</c>, <c>ShmSize</c>, <c>Ulimits</c>, <c>Dns*</c>, <c>ExtraHosts</c>): checked as dockerd checks
/// them, with its messages, before anything is stored. Values reach the node as typed fields of the definition.
/// </summary>
public static partial class CreateHostOptions
{
    private static readonly HashSet<string> Propagations = ["rprivate", "private", "rshared", "shared", "rslave", "slave"];

    /// <summary>Flags a tmpfs may take (moby's <c>MergeTmpfsOptions</c>), passed to the kernel as given.</summary>
    private static readonly HashSet<string> TmpfsFlags =
    [
        "ro", "rw", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "atime", "noatime", "diratime", "nodiratime", "relatime",
        "norelatime", "strictatime", "nostrictatime", "sync", "async", "dirsync",
    ];

    private static readonly HashSet<string> UlimitNames =
    [
        "as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss", "rtprio", "rttime",
        "sigpending", "stack",
    ];

    [GeneratedRegex("^[0-9]+[kmgKMG%]?$")]
    private static partial Regex TmpfsSize();

    [GeneratedRegex("^[0-7]{1,4}$")]
    private static partial Regex OctalMode();

    /// <summary><c>HostConfig.Tmpfs</c> (<c>--tmpfs /run:size=64m</c>): a map of path to comma-separated options.</summary>
    public static List<ContainerTmpfs> Tmpfs(JsonNode? node)
    {
        var result = new List<ContainerTmpfs>();
        foreach (var (path, value) in node as JsonObject ?? [])
        {
            if (!path.StartsWith('/')) throw Invalid($"invalid mount path: '{path}' mount path must be absolute");
            var options = (value?.ToString() ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
            CheckTmpfsOptions(options);
            result.Add(new ContainerTmpfs(path, options));
        }
        return result;
    }

    private static void CheckTmpfsOptions(IEnumerable<string> options)
    {
        foreach (var option in options)
        {
            var (key, value) = option.Split('=', 2) is [var k, var v] ? (k, v) : (option, (string?)null);
            var valid = value is null
                ? TmpfsFlags.Contains(key)
                : key switch
                {
                    "size" => TmpfsSize().IsMatch(value),
                    "mode" => OctalMode().IsMatch(value),
                    "uid" or "gid" or "nr_inodes" or "nr_blocks" => uint.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out _),
                    _ => false,
                };
            if (!valid) throw Invalid($"invalid tmpfs option \"{option}\"");
        }
    }

    /// <summary>
    /// <c>HostConfig.Mounts</c> (<c>--mount</c>): bind and volume mounts join <paramref name="mounts"/> (a volume through
    /// <paramref name="volumeMount"/>, as <c>-v</c>), tmpfs mounts join <paramref name="tmpfs"/>. Returns the mounts as
    /// inspect shows them. A sub-option Flotilla does not implement is refused by name.
    /// </summary>
    public static List<StoredMount> Mounts(JsonNode? node, Func<string, ContainerMount> volumeMount, List<ContainerMount> mounts, List<ContainerTmpfs> tmpfs)
    {
        var stored = new List<StoredMount>();
        var list = node as JsonArray ?? [];
        for (var i = 0; i < list.Count; i++)
        {
            var m = list[i] as JsonObject ?? throw Invalid($"HostConfig.Mounts[{i}] is not an object");
            var type = m["Type"]?.ToString() ?? "";
            var source = m["Source"]?.ToString() ?? "";
            var target = m["Target"]?.ToString() ?? "";
            var readOnly = Bool(m["ReadOnly"]);
            string Bad(string why) => $"invalid mount config for type \"{type}\": {why}";
            foreach (var (key, value) in m)
            {
                if (key is "Type" or "Source" or "Target" or "ReadOnly" or "BindOptions" or "VolumeOptions" or "TmpfsOptions") continue;
                // Docker Desktop's file-sharing hint: no meaning on Linux, where dockerd ignores it as well.
                if (key == "Consistency") continue;
                if (!CreateOptionTable.IsZero(value, []))
                    throw Invalid($"HostConfig.Mounts[{i}].{key} is not supported by Flotilla: refused rather than ignored");
            }
            foreach (var options in new[] { "BindOptions", "VolumeOptions", "TmpfsOptions" })
                if (m[options] is not null && options != type switch { "bind" => "BindOptions", "volume" => "VolumeOptions", _ => "TmpfsOptions" })
                    throw Invalid(Bad($"field {options} must not be specified"));
            if (type is not ("bind" or "volume" or "tmpfs"))
                throw type.Length == 0
                    ? Invalid("invalid mount config: mount type must be specified")
                    : Invalid($"HostConfig.Mounts[{i}].Type \"{type}\" is not supported by Flotilla: bind, volume and tmpfs are");
            if (target.Length == 0) throw Invalid(Bad("field Target must not be empty"));
            if (!target.StartsWith('/')) throw Invalid(Bad($"invalid mount path: '{target}' mount path must be absolute"));
            if (target == "/") throw Invalid(Bad("invalid specification: destination can't be '/'"));
            if (mounts.Any(x => x.Destination == target) || tmpfs.Any(x => x.Destination == target))
                throw Invalid($"Duplicate mount point: {target}");

            switch (type)
            {
                case "bind":
                    {
                        var bindOptions = m["BindOptions"] as JsonObject ?? [];
                        RefuseOthers(bindOptions, $"HostConfig.Mounts[{i}].BindOptions", "Propagation");
                        var propagation = bindOptions["Propagation"]?.ToString() is { Length: > 0 } p ? p : "rprivate";
                        if (!Propagations.Contains(propagation)) throw Invalid($"invalid propagation mode: {propagation}");
                        if (source.Length == 0) throw Invalid(Bad("field Source must not be empty"));
                        if (!source.StartsWith('/')) throw Invalid(Bad($"invalid mount path: '{source}' mount path must be absolute"));
                        // Unlike -v, --mount does not create a missing source (dockerd's behaviour).
                        if (!Directory.Exists(source) && !File.Exists(source)) throw Invalid(Bad($"bind source path does not exist: {source}"));
                        mounts.Add(new ContainerMount("bind", source, target, readOnly, null) { Propagation = propagation });
                        stored.Add(new StoredMount("bind", source, target, readOnly) { BindOptions = new StoredBindOptions(propagation) });
                        break;
                    }
                case "volume":
                    {
                        var volumeOptions = m["VolumeOptions"] as JsonObject ?? [];
                        RefuseOthers(volumeOptions, $"HostConfig.Mounts[{i}].VolumeOptions", "NoCopy", "DriverConfig");
                        if (volumeOptions["DriverConfig"] is JsonObject driver &&
                            (driver["Name"]?.ToString() is not (null or "" or "local") || !CreateOptionTable.IsZero(driver["Options"], [])))
                            throw Invalid($"HostConfig.Mounts[{i}].VolumeOptions.DriverConfig (volume-driver, volume-opt) is not supported by Flotilla: refused rather than ignored");
                        var name = source;
                        if (name.Length == 0)
                            name = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
                        else if (!Cluster.Containers.ContainerNames.IsValid(name))
                            throw Invalid($"create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path");
                        // Flotilla never copies image content into a volume, so NoCopy is what happens either way.
                        var noCopy = Bool(volumeOptions["NoCopy"]);
                        mounts.Add(volumeMount(name) with { Destination = target, ReadOnly = readOnly, Type = "volume" });
                        stored.Add(new StoredMount("volume", source, target, readOnly) { VolumeOptions = noCopy ? new StoredVolumeOptions(true) : null });
                        break;
                    }
                default:
                    {
                        if (source.Length > 0) throw Invalid(Bad("field Source must not be specified"));
                        var tmpfsOptions = m["TmpfsOptions"] as JsonObject ?? [];
                        RefuseOthers(tmpfsOptions, $"HostConfig.Mounts[{i}].TmpfsOptions", "SizeBytes", "Mode");
                        var size = Long(tmpfsOptions["SizeBytes"]);
                        if (size < 0) throw Invalid(Bad("invalid tmpfs size"));
                        var mode = Long(tmpfsOptions["Mode"]);
                        if (mode is < 0 or > 0xFFF) throw Invalid(Bad($"invalid tmpfs mode: {mode}"));
                        var options = new List<string>();
                        if (readOnly) options.Add("ro");
                        if (size > 0) options.Add("size=" + size.ToString(CultureInfo.InvariantCulture));
                        if (mode > 0) options.Add("mode=" + Convert.ToString(mode, 8));
                        tmpfs.Add(new ContainerTmpfs(target, options));
                        stored.Add(new StoredMount("tmpfs", "", target, readOnly)
                        {
                            TmpfsOptions = size > 0 || mode > 0 ? new StoredTmpfsOptions(size, mode) : null,
                        });
                        break;
                    }
            }
        }
        return stored;
    }

    private static void RefuseOthers(JsonObject options, string path, params string[] implemented)
    {
        foreach (var (key, value) in options)
            if (!implemented.Contains(key) && !CreateOptionTable.IsZero(value, []))
                throw Invalid($"{path}.{key} is not supported by Flotilla: refused rather than ignored");
    }

    /// <summary><c>HostConfig.Ulimits</c>: <c>[{Name, Soft, Hard}]</c>, one per name (the last wins, as the CLI's map).</summary>
    public static List<ContainerUlimit> Ulimits(JsonNode? node)
    {
        var result = new List<ContainerUlimit>();
        foreach (var item in node as JsonArray ?? [])
        {
            var name = item?["Name"]?.ToString() ?? "";
            if (!UlimitNames.Contains(name)) throw Invalid($"invalid ulimit type: {name}");
            var (soft, hard) = (Long(item?["Soft"]), Long(item?["Hard"]));
            if (soft > hard && hard >= 0) throw Invalid($"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}");
            result.RemoveAll(u => u.Name == name);
            result.Add(new ContainerUlimit(name, soft, hard));
        }
        return result;
    }

    /// <summary><c>HostConfig.Dns</c>: IP addresses only (they become <c>nameserver</c> lines).</summary>
    public static List<string> Dns(JsonNode? node)
    {
        var servers = Strings(node);
        foreach (var server in servers)
            if (!IPAddress.TryParse(server, out _)) throw Invalid($"{server} is not an ip address");
        return servers;
    }

    /// <summary><c>DnsSearch</c> and <c>DnsOptions</c>: one word each, so nothing but the one line is written.</summary>
    public static List<string> DnsWords(JsonNode? node, string what)
    {
        var words = Strings(node);
        foreach (var word in words)
            if (word.Length is 0 or > 255 || word.Any(c => char.IsWhiteSpace(c) || char.IsControl(c) || c == '#'))
                throw Invalid($"{word} is not a valid {what}");
        return words;
    }

    /// <summary><c>HostConfig.ExtraHosts</c> (<c>--add-host name:ip</c>, also <c>name=ip</c>); <c>host-gateway</c> needs networking.</summary>
    public static List<string> ExtraHosts(JsonNode? node)
    {
        var entries = Strings(node);
        foreach (var entry in entries)
        {
            var equals = entry.IndexOf('=');
            var separator = equals >= 0 ? equals : entry.IndexOf(':');
            var (host, address) = separator > 0 ? (entry[..separator], entry[(separator + 1)..]) : ("", "");
            if (address == "host-gateway")
                throw Invalid($"HostConfig.ExtraHosts \"{entry}\" (--add-host …:host-gateway) is not supported by Flotilla yet: refused rather than ignored");
            if (host.Length == 0 || host.Any(c => char.IsWhiteSpace(c) || char.IsControl(c) || c == '#') ||
                !IPAddress.TryParse(address.Trim('[', ']'), out _))
                throw Invalid($"invalid IP address in add-host: \"{entry}\"");
        }
        return entries;
    }

    [GeneratedRegex("^[rwm]{1,3}$")]
    private static partial Regex CgroupPermissions();

    /// <summary>
    /// <c>HostConfig.Devices</c> (<c>--device /dev/x[:/dev/y][:rwm]</c>). The host path is read on the container's node
    /// at start (it names that node's device); here only the shape is checked.
    /// </summary>
    public static List<ContainerDevice> Devices(JsonNode? node)
    {
        var result = new List<ContainerDevice>();
        foreach (var item in node as JsonArray ?? [])
        {
            var host = item?["PathOnHost"]?.ToString() ?? "";
            var inContainer = item?["PathInContainer"]?.ToString() is { Length: > 0 } p ? p : host;
            var permissions = item?["CgroupPermissions"]?.ToString() is { Length: > 0 } c ? c : "rwm";
            if (!host.StartsWith('/')) throw Invalid($"invalid device path: '{host}': device path must be absolute");
            if (!inContainer.StartsWith('/') || inContainer.Split('/').Contains(".."))
                throw Invalid($"invalid device path in container: '{inContainer}'");
            if (!CgroupPermissions().IsMatch(permissions) || permissions.Distinct().Count() != permissions.Length)
                throw Invalid($"invalid device mode: {permissions}");
            result.Add(new ContainerDevice(host, inContainer, permissions));
        }
        return result;
    }

    /// <summary><c>HostConfig.ShmSize</c> in bytes; 0 = Docker's default (64 MiB).</summary>
    public static long ShmSize(JsonNode? node)
    {
        var size = Long(node);
        if (size < 0) throw Invalid("SHM size can not be less than 0");
        return size;
    }
}

/// <summary>One <c>HostConfig.Mounts</c> entry as inspect shows it (Docker's field names).</summary>
public sealed record StoredMount(string Type, string Source, string Target, bool ReadOnly)
{
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public StoredBindOptions? BindOptions { get; init; }

    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public StoredVolumeOptions? VolumeOptions { get; init; }

    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public StoredTmpfsOptions? TmpfsOptions { get; init; }
}

public sealed record StoredBindOptions(string Propagation);

public sealed record StoredVolumeOptions(bool NoCopy);

public sealed record StoredTmpfsOptions(long SizeBytes, long Mode);
