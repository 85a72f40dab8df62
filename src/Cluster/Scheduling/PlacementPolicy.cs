using System.Text.RegularExpressions;

namespace Flotilla.Cluster.Scheduling;

/// <summary>A host as the scheduler sees it: capacity, labels, and what is already placed on it.</summary>
public sealed record NodeCapacity(string Name, int Cpus, long MemoryBytes, IReadOnlyDictionary<string, string> Labels)
{
    public int Containers { get; set; }
    public long ReservedMemory { get; set; }
    public long ReservedNanoCpus { get; set; }

    public long FreeMemory => MemoryBytes - ReservedMemory;
    public long FreeNanoCpus => Cpus * 1_000_000_000L - ReservedNanoCpus;
}

/// <summary>One Swarm-classic constraint: <c>node==n1</c>, <c>disk!=hdd</c>, <c>zone==eu-*</c> (globs, or <c>/regex/</c>).</summary>
public sealed record PlacementConstraint(string Key, bool Equal, string Pattern)
{
    private static readonly Regex Expression = new(@"^\s*(?<key>[A-Za-z0-9_.\-/]+)\s*(?<op>==|!=)\s*(?<value>\S.*?)\s*$", RegexOptions.CultureInvariant);

    public static PlacementConstraint Parse(string text)
    {
        var m = Expression.Match(text);
        if (!m.Success) throw new FormatException($"invalid constraint '{text}': expected KEY==VALUE or KEY!=VALUE");
        var key = m.Groups["key"].Value;
        // Swarm-mode spellings are accepted too: node.hostname, node.labels.<key>.
        if (key is "node.hostname" or "node.name") key = "node";
        else if (key.StartsWith("node.labels.", StringComparison.Ordinal)) key = key["node.labels.".Length..];
        return new PlacementConstraint(key, m.Groups["op"].Value == "==", m.Groups["value"].Value);
    }

    public bool Allows(NodeCapacity node)
    {
        var value = Key == "node" ? node.Name : node.Labels.TryGetValue(Key, out var v) ? v : null;
        var matches = value is not null && Matches(value);
        return Equal ? matches : !matches;
    }

    private bool Matches(string value)
    {
        if (Pattern.Length > 2 && Pattern.StartsWith('/') && Pattern.EndsWith('/'))
            return Regex.IsMatch(value, Pattern[1..^1], RegexOptions.CultureInvariant, TimeSpan.FromMilliseconds(50));
        if (!Pattern.Contains('*') && !Pattern.Contains('?')) return string.Equals(value, Pattern, StringComparison.Ordinal);
        var glob = "^" + Regex.Escape(Pattern).Replace(@"\*", ".*").Replace(@"\?", ".") + "$";
        return Regex.IsMatch(value, glob, RegexOptions.CultureInvariant);
    }

    public override string ToString() => $"{Key}{(Equal ? "==" : "!=")}{Pattern}";
}

public static class PlacementStrategies
{
    public const string Spread = "spread";
    public const string Binpack = "binpack";

    public static bool IsKnown(string? strategy) => strategy is null or Spread or Binpack;
}

/// <summary>
/// The placement decision, a pure function: filter the hosts by constraints and free resources, then rank them:
/// <c>spread</c> takes the host with the fewest containers (then the most free memory), <c>binpack</c> the fullest
/// host that still fits. Ties go to the name, so the same inputs always give the same host.
/// </summary>
public static class PlacementPolicy
{
    public sealed record Outcome(NodeCapacity? Node, string Reason);

    public static Outcome Choose(IReadOnlyCollection<NodeCapacity> nodes, long memory, long nanoCpus,
        IReadOnlyList<PlacementConstraint> constraints, string strategy)
    {
        if (nodes.Count == 0) return new Outcome(null, "no node is available (none is ready and active)");
        // One pass over the hosts (a thousand of them is the common case for the simulation bench).
        NodeCapacity? chosen = null;
        int allowedCount = 0, fittingCount = 0;
        var binpack = strategy == PlacementStrategies.Binpack;
        foreach (var n in nodes)
        {
            var ok = true;
            for (var i = 0; i < constraints.Count && ok; i++) ok = constraints[i].Allows(n);
            if (!ok) continue;
            allowedCount++;
            if (n.FreeMemory < memory || n.FreeNanoCpus < nanoCpus) continue;
            fittingCount++;
            if (chosen is null || (binpack ? BinpackBetter(n, chosen) : SpreadBetter(n, chosen))) chosen = n;
        }
        if (allowedCount == 0)
            return new Outcome(null, $"no node satisfies the constraints {string.Join(", ", constraints)} (of {nodes.Count} available)");
        if (chosen is null)
            return new Outcome(null, $"no node has {Describe(memory, nanoCpus)} free (of {allowedCount} that satisfy the constraints)");
        var fitting = fittingCount;
        var why = strategy == PlacementStrategies.Binpack
            ? $"binpack: fullest of {fitting} fitting node(s), {chosen.Containers} container(s), {Mib(chosen.FreeMemory)} MiB free"
            : $"spread: fewest containers ({chosen.Containers}) of {fitting} fitting node(s), {Mib(chosen.FreeMemory)} MiB free";
        if (constraints.Count > 0) why += $"; constraints {string.Join(", ", constraints)}";
        if (memory > 0 || nanoCpus > 0) why += $"; reserves {Describe(memory, nanoCpus)}";
        return new Outcome(chosen, why);
    }

    /// <summary>Fewest containers, then most free memory, then the name.</summary>
    private static bool SpreadBetter(NodeCapacity a, NodeCapacity b) =>
        a.Containers != b.Containers ? a.Containers < b.Containers
        : a.FreeMemory != b.FreeMemory ? a.FreeMemory > b.FreeMemory
        : string.CompareOrdinal(a.Name, b.Name) < 0;

    /// <summary>Most memory reserved, then most containers, then the name.</summary>
    private static bool BinpackBetter(NodeCapacity a, NodeCapacity b) =>
        a.ReservedMemory != b.ReservedMemory ? a.ReservedMemory > b.ReservedMemory
        : a.Containers != b.Containers ? a.Containers > b.Containers
        : string.CompareOrdinal(a.Name, b.Name) < 0;

    private static long Mib(long bytes) => bytes / (1024 * 1024);

    private static string Describe(long memory, long nanoCpus) =>
        string.Join(" and ", new[]
        {
            memory > 0 ? $"{Mib(memory)} MiB memory" : null,
            nanoCpus > 0 ? $"{nanoCpus / 1e9:0.##} CPUs" : null,
        }.Where(s => s is not null)) is { Length: > 0 } s ? s : "nothing";
}
