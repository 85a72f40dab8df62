using System.Globalization;

namespace Flotilla.NodeRuntime.Oci;

/// <summary>Linux capability names, Docker's default set, and the set this process may hand out.</summary>
public static class Capabilities
{
    /// <summary>Docker's default capability set (moby <c>oci/caps/defaults.go</c>) → CapEff 00000000a80425fb.</summary>
    public static readonly IReadOnlyList<string> Default =
    [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
    ];

    /// <summary>Every capability by number (linux/capability.h).</summary>
    public static readonly IReadOnlyList<string> ByNumber =
    [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
        "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
        "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
        "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND",
        "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
    ];

    /// <summary>
    /// The capabilities this process holds in its bounding and permitted sets: "all capabilities" for a privileged
    /// container. (On hosts where root lacks some, e.g. CAP_SYS_RESOURCE, asking runc for them fails.)
    /// </summary>
    public static IReadOnlyList<string> Host()
    {
        ulong bnd = ulong.MaxValue, prm = ulong.MaxValue;
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("CapBnd:", StringComparison.Ordinal)) bnd = ulong.Parse(line[7..].Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            else if (line.StartsWith("CapPrm:", StringComparison.Ordinal)) prm = ulong.Parse(line[7..].Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        }
        var held = bnd & prm;
        return ByNumber.Where((_, i) => (held & (1UL << i)) != 0).ToList();
    }

    /// <summary>"net_admin", "NET_ADMIN", "CAP_NET_ADMIN" → "CAP_NET_ADMIN"; "ALL" stays "ALL".</summary>
    public static string Normalize(string name)
    {
        var upper = name.Trim().ToUpperInvariant();
        if (upper == "ALL") return upper;
        var full = upper.StartsWith("CAP_", StringComparison.Ordinal) ? upper : "CAP_" + upper;
        if (!ByNumber.Contains(full)) throw new ArgumentException($"unknown capability: \"{name}\"");
        return full;
    }

    /// <summary>Docker's merge (moby <c>caps.TweakCapabilities</c>): defaults, minus drops, plus adds; "ALL" in either.</summary>
    public static IReadOnlyList<string> Effective(IEnumerable<string> add, IEnumerable<string> drop, bool privileged, IReadOnlyList<string> hostCaps)
    {
        if (privileged) return hostCaps;
        var adds = add.Select(Normalize).ToList();
        var drops = drop.Select(Normalize).ToList();
        IEnumerable<string> basis = drops.Contains("ALL") ? [] : Default.Where(c => !drops.Contains(c));
        if (adds.Contains("ALL")) basis = hostCaps.Where(c => !drops.Contains(c) || adds.Contains(c));
        var result = basis.Concat(adds.Where(c => c != "ALL")).Distinct().ToList();
        return result;
    }

    /// <summary>The kernel's bit mask of a capability list, as /proc/PID/status prints it.</summary>
    public static ulong Mask(IEnumerable<string> caps) =>
        caps.Aggregate(0UL, (m, c) => m | (1UL << ByNumber.ToList().IndexOf(c)));
}
