using System.Runtime.InteropServices;
using System.Text.Json.Nodes;

namespace Flotilla.NodeRuntime.Oci;

/// <summary>
/// Turns a containers/common (Docker-style) seccomp profile — <c>archMap</c>, rules with
/// <c>includes</c>/<c>excludes</c> by caps, arches and minKernel — into the OCI <c>linux.seccomp</c> object for
/// one architecture, capability set and kernel, as moby's <c>profiles/seccomp.setupSeccomp</c> does. Given raw,
/// runc accepts the containers/common profile silently and enforces the wrong policy (kcmp allowed).
/// </summary>
public static class SeccompProfileConverter
{
    /// <summary>The host profile shipped by containers-common.</summary>
    public const string DefaultProfilePath = "/usr/share/containers/seccomp.json";

    /// <summary>Go's name for the architecture of this process (the names profiles use in <c>arches</c>).</summary>
    public static string NativeArch => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => "amd64",
        Architecture.Arm64 => "arm64",
        Architecture.X86 => "386",
        Architecture.Arm => "arm",
        Architecture.S390x => "s390x",
        Architecture.Ppc64le => "ppc64le",
        Architecture.RiscV64 => "riscv64",
        Architecture.LoongArch64 => "loong64",
        var other => other.ToString().ToLowerInvariant(),
    };

    /// <summary>libseccomp's name for a Go architecture name.</summary>
    public static string ScmpArch(string goArch) => goArch switch
    {
        "amd64" => "SCMP_ARCH_X86_64",
        "386" => "SCMP_ARCH_X86",
        "arm64" => "SCMP_ARCH_AARCH64",
        "arm" => "SCMP_ARCH_ARM",
        "s390x" => "SCMP_ARCH_S390X",
        "ppc64le" => "SCMP_ARCH_PPC64LE",
        "riscv64" => "SCMP_ARCH_RISCV64",
        "loong64" => "SCMP_ARCH_LOONGARCH64",
        "mips64" => "SCMP_ARCH_MIPS64",
        "mips64le" => "SCMP_ARCH_MIPSEL64",
        _ => throw new ArgumentException($"no seccomp architecture known for '{goArch}'", nameof(goArch)),
    };

    /// <summary>The running kernel's "major.minor", from /proc/sys/kernel/osrelease.</summary>
    public static Version HostKernel()
    {
        var release = File.Exists("/proc/sys/kernel/osrelease") ? File.ReadAllText("/proc/sys/kernel/osrelease") : "0.0";
        return ParseKernel(release) ?? new Version(0, 0);
    }

    public static JsonObject Convert(string profileJson, IReadOnlyCollection<string> capabilities, string? goArch = null, Version? kernel = null) =>
        Convert(JsonNode.Parse(profileJson)?.AsObject() ?? throw new FormatException("seccomp profile is not a JSON object"),
            capabilities, goArch, kernel);

    public static JsonObject Convert(JsonObject profile, IReadOnlyCollection<string> capabilities, string? goArch = null, Version? kernel = null)
    {
        var arch = goArch ?? NativeArch;
        var kernelVersion = kernel ?? HostKernel();
        var caps = new HashSet<string>(capabilities, StringComparer.Ordinal);

        var result = new JsonObject
        {
            ["defaultAction"] = (string?)profile["defaultAction"] ?? throw new FormatException("seccomp profile has no defaultAction"),
        };
        if (profile["defaultErrnoRet"] is { } defaultErrno) result["defaultErrnoRet"] = (uint)defaultErrno;

        var architectures = new JsonArray();
        if (profile["archMap"] is JsonArray archMap && archMap.Count > 0)
        {
            if (profile["architectures"] is JsonArray { Count: > 0 })
                throw new FormatException("seccomp profile has both 'architectures' and 'archMap'");
            var native = ScmpArch(arch);
            foreach (var entry in archMap.OfType<JsonObject>())
            {
                if ((string?)entry["architecture"] != native) continue;
                architectures.Add(native);
                if (entry["subArchitectures"] is JsonArray subs)
                    foreach (var s in subs) architectures.Add((string?)s);
            }
        }
        else if (profile["architectures"] is JsonArray archs)
        {
            foreach (var a in archs) architectures.Add((string?)a);
        }
        if (architectures.Count > 0) result["architectures"] = architectures;
        if (profile["flags"] is JsonArray { Count: > 0 } flags) result["flags"] = flags.DeepClone();

        var syscalls = new JsonArray();
        foreach (var rule in (profile["syscalls"] as JsonArray ?? []).OfType<JsonObject>())
        {
            if (!Applies(rule, arch, caps, kernelVersion)) continue;
            var names = new JsonArray();
            if (rule["names"] is JsonArray ruleNames)
                foreach (var n in ruleNames) names.Add((string?)n);
            if ((string?)rule["name"] is { Length: > 0 } single) names.Add(single);
            if (names.Count == 0) continue;
            var call = new JsonObject
            {
                ["names"] = names,
                ["action"] = (string?)rule["action"] ?? throw new FormatException("seccomp rule without action"),
            };
            if (rule["errnoRet"] is { } errnoRet) call["errnoRet"] = (uint)errnoRet;
            if (rule["args"] is JsonArray { Count: > 0 } args)
            {
                var outArgs = new JsonArray();
                foreach (var a in args.OfType<JsonObject>())
                {
                    outArgs.Add(new JsonObject
                    {
                        ["index"] = (uint)a["index"]!,
                        ["value"] = (ulong)a["value"]!,
                        ["valueTwo"] = (ulong?)a["valueTwo"] ?? 0,
                        ["op"] = (string)a["op"]!,
                    });
                }
                call["args"] = outArgs;
            }
            syscalls.Add(call);
        }
        result["syscalls"] = syscalls;
        return result;
    }

    private static bool Applies(JsonObject rule, string arch, HashSet<string> caps, Version kernel)
    {
        if (rule["excludes"] is JsonObject ex)
        {
            if (Strings(ex["arches"]).Contains(arch)) return false;
            if (Strings(ex["caps"]).Any(caps.Contains)) return false;
            if ((string?)ex["minKernel"] is { Length: > 0 } min && kernel >= (ParseKernel(min) ?? throw BadKernel(min))) return false;
        }
        if (rule["includes"] is JsonObject inc)
        {
            var arches = Strings(inc["arches"]);
            if (arches.Count > 0 && !arches.Contains(arch)) return false;
            if (!Strings(inc["caps"]).All(caps.Contains)) return false;
            if ((string?)inc["minKernel"] is { Length: > 0 } min && kernel < (ParseKernel(min) ?? throw BadKernel(min))) return false;
        }
        return true;
    }

    private static List<string> Strings(JsonNode? node) =>
        node is JsonArray a ? a.Select(n => (string?)n).OfType<string>().ToList() : [];

    private static FormatException BadKernel(string s) => new($"seccomp profile: invalid minKernel '{s}'");

    /// <summary>"6.18.0-1-amd64" → 6.18; "4.8" → 4.8.</summary>
    public static Version? ParseKernel(string release)
    {
        var parts = release.Trim().Split('.', 3);
        if (parts.Length < 2) return null;
        static int Leading(string s) => int.TryParse(new string(s.TakeWhile(char.IsAsciiDigit).ToArray()), out var n) ? n : -1;
        var (major, minor) = (Leading(parts[0]), Leading(parts[1]));
        return major < 0 || minor < 0 ? null : new Version(major, minor);
    }
}
