using Flotilla.NodeRuntime.Images;

namespace Flotilla.NodeRuntime.Distribution;

/// <summary>An image platform, <c>os/architecture[/variant]</c>.</summary>
public sealed record PlatformSpec(string Os, string Architecture, string? Variant = null)
{
    public static PlatformSpec Host => new(HostPlatform.Os, HostPlatform.Architecture);

    public override string ToString() => Variant is null ? $"{Os}/{Architecture}" : $"{Os}/{Architecture}/{Variant}";

    /// <summary>Docker's <c>--platform</c> syntax: <c>linux/amd64</c>, <c>linux/arm64/v8</c>, or just <c>linux</c>.</summary>
    public static PlatformSpec Parse(string text)
    {
        var parts = text.Trim().ToLowerInvariant().Split('/');
        if (parts.Length is < 1 or > 3 || parts.Any(p => p.Length == 0))
            throw new FormatException($"\"{text}\": unknown operating system or architecture: invalid argument");
        return parts.Length switch
        {
            1 => new PlatformSpec(parts[0], HostPlatform.Architecture),
            2 => new PlatformSpec(parts[0], NormalizeArch(parts[1])),
            _ => new PlatformSpec(parts[0], NormalizeArch(parts[1]), parts[2]),
        };
    }

    private static string NormalizeArch(string arch) => arch switch
    {
        "x86_64" or "x86-64" => "amd64",
        "aarch64" => "arm64",
        "i386" => "386",
        _ => arch,
    };
}

/// <summary>Picks the manifest of an index (manifest list) for a platform, as containerd's matcher does loosely.</summary>
public static class PlatformSelector
{
    /// <summary>
    /// The entry whose os and architecture match; among several, the one whose variant equals the wanted one, then one
    /// without a variant, then any. Null when no entry matches.
    /// </summary>
    public static OciDescriptor? Select(IReadOnlyList<OciDescriptor> manifests, PlatformSpec wanted)
    {
        OciDescriptor? best = null;
        var bestRank = -1;
        foreach (var m in manifests)
        {
            if (m.Platform is not { } p) continue;
            if (!p.Os.Equals(wanted.Os, StringComparison.OrdinalIgnoreCase) || !p.Architecture.Equals(wanted.Architecture, StringComparison.OrdinalIgnoreCase))
                continue;
            var rank = wanted.Variant is not null && string.Equals(p.Variant, wanted.Variant, StringComparison.OrdinalIgnoreCase) ? 3
                : p.Variant is null || wanted.Variant is null && IsDefaultVariant(p.Architecture, p.Variant) ? 2
                : 1;
            if (rank > bestRank)
            {
                best = m;
                bestRank = rank;
            }
        }
        return best;
    }

    private static bool IsDefaultVariant(string arch, string variant) => (arch, variant) switch
    {
        ("amd64", "v1") or ("arm64", "v8") => true,
        _ => false,
    };
}
