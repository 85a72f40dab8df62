namespace Flotilla.NodeRuntime.Images;

/// <summary>
/// The few reference rules the archive code needs: <c>busybox</c> → <c>docker.io/library/busybox:latest</c> and back.
/// Kept small on purpose so a full ImageReference parser can replace it in one place.
/// </summary>
public static class RepoTagNames
{
    public const string DefaultDomain = "docker.io";
    public const string DefaultTag = "latest";

    /// <summary>
    /// Normalizes a tag reference as found in an archive (<c>alpine:3</c>, <c>localhost/bb:1</c>,
    /// <c>docker.io/library/alpine</c>). Digest references are not tags: <see cref="FormatException"/>.
    /// </summary>
    public static string Normalize(string raw)
    {
        if (string.IsNullOrWhiteSpace(raw) || raw.Length > 4096) throw new FormatException($"invalid reference format: '{Show(raw)}'");
        if (raw.Contains('@')) throw new FormatException($"invalid tag reference '{Show(raw)}': digest references cannot be tags");
        // One grammar for the whole engine: Docker's, in ImageReference.
        return ImageReference.ParseDockerRef(raw).ToString();
    }

    public static bool TryNormalize(string raw, out string normalized)
    {
        try
        {
            normalized = Normalize(raw);
            return true;
        }
        catch (FormatException)
        {
            normalized = "";
            return false;
        }
    }

    /// <summary>Repository and tag of a normalized reference: (<c>docker.io/library/busybox</c>, <c>latest</c>).</summary>
    public static (string Repository, string Tag) Split(string normalized)
    {
        var (name, tag) = SplitRaw(normalized);
        return (name, tag ?? DefaultTag);
    }

    /// <summary>The short form Docker shows and writes into <c>manifest.json</c>: <c>busybox</c>, <c>localhost/bb</c>.</summary>
    public static string FamiliarRepository(string normalizedRepository)
    {
        if (normalizedRepository.StartsWith("docker.io/library/", StringComparison.Ordinal) &&
            normalizedRepository.IndexOf('/', "docker.io/library/".Length) < 0)
            return normalizedRepository["docker.io/library/".Length..];
        if (normalizedRepository.StartsWith("docker.io/", StringComparison.Ordinal)) return normalizedRepository["docker.io/".Length..];
        return normalizedRepository;
    }

    /// <summary><c>docker.io/library/busybox:latest</c> → <c>busybox:latest</c>.</summary>
    public static string Familiar(string normalized)
    {
        var (repository, tag) = Split(normalized);
        return $"{FamiliarRepository(repository)}:{tag}";
    }

    private static (string Name, string? Tag) SplitRaw(string raw)
    {
        var colon = raw.LastIndexOf(':');
        if (colon > raw.LastIndexOf('/')) return (raw[..colon], raw[(colon + 1)..]);
        return (raw, null);
    }

    private static string Show(string s) => s.Length > 80 ? s[..80] + "…" : s;
}
