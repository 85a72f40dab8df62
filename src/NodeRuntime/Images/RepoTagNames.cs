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
        var (name, tag) = SplitRaw(raw);
        tag ??= DefaultTag;
        if (!IsValidTag(tag)) throw new FormatException($"invalid reference format: invalid tag '{Show(tag)}'");

        var slash = name.IndexOf('/');
        string domain, path;
        if (slash < 0) (domain, path) = (DefaultDomain, name);
        else
        {
            var first = name[..slash];
            if (first.Contains('.') || first.Contains(':') || first == "localhost" || first.Any(char.IsAsciiLetterUpper))
                (domain, path) = (first, name[(slash + 1)..]);
            else (domain, path) = (DefaultDomain, name);
        }
        if (domain == "index.docker.io") domain = DefaultDomain;
        if (domain == DefaultDomain && !path.Contains('/')) path = "library/" + path;
        foreach (var component in path.Split('/'))
            if (!IsValidPathComponent(component))
                throw new FormatException($"invalid reference format: repository name '{Show(path)}' must be lowercase [a-z0-9] separated by . _ __ -");
        return $"{domain}/{path}:{tag}";
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

    private static bool IsValidTag(string tag) =>
        tag.Length is > 0 and <= 128 && (char.IsAsciiLetterOrDigit(tag[0]) || tag[0] == '_') &&
        tag.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '.' or '-');

    private static bool IsValidPathComponent(string component)
    {
        if (component.Length == 0 || !char.IsAsciiLetterLower(component[0]) && !char.IsAsciiDigit(component[0])) return false;
        if (!char.IsAsciiLetterLower(component[^1]) && !char.IsAsciiDigit(component[^1])) return false;
        return component.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '.' or '_' or '-');
    }

    private static string Show(string s) => s.Length > 80 ? s[..80] + "…" : s;
}
