using System.Text.RegularExpressions;

namespace Flotilla.NodeRuntime.Oci;

/// <summary>
/// The cgroup a host's containers live under (<c>--cgroup-parent</c>). Two hosts on one kernel (the multi-host
/// harness, or engines sharing a machine) must not share it: a container id names the same cgroup on both.
/// </summary>
public static partial class CgroupParents
{
    public const string Default = "/flotilla";

    /// <summary>An absolute path of plain segments (letters, digits, <c>._-</c>), no <c>.</c>/<c>..</c>; else a usage error naming the flag.</summary>
    public static string Validate(string value)
    {
        var trimmed = value.TrimEnd('/');
        if (!Shape().IsMatch(trimmed) || trimmed.Split('/').Any(s => s is "." or ".."))
            throw new ArgumentException($"--cgroup-parent: '{value}' is not an absolute cgroup path of plain segments (e.g. /flotilla)");
        return trimmed;
    }

    [GeneratedRegex("^(/[A-Za-z0-9._-]{1,100}){1,8}$")]
    private static partial Regex Shape();
}
