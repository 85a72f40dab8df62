using System.Text.RegularExpressions;

namespace Flotilla.NodeRuntime.Images;

/// <summary>A malformed image reference; the message is Docker's.</summary>
public sealed class InvalidReferenceException(string message) : FormatException(message);

/// <summary>
/// An image reference in Docker's grammar (github.com/distribution/reference):
/// <c>[host[:port]/]path[:tag][@digest]</c>, always held normalised — <c>busybox</c> is
/// <c>docker.io/library/busybox</c>. <see cref="Parse"/> is Docker's <c>ParseNormalizedNamed</c>
/// (no default tag); <see cref="ParseDockerRef"/> adds <c>:latest</c> when there is neither tag nor
/// digest, and drops the tag when both are given (the digest decides), as <c>docker pull</c> does.
/// </summary>
public sealed partial record ImageReference
{
    public const string DefaultDomain = "docker.io";
    public const string LegacyDefaultDomain = "index.docker.io";
    public const string OfficialRepoPrefix = "library/";
    public const string DefaultTag = "latest";
    public const int NameTotalLengthMax = 255;

    private ImageReference(string domain, string path, string? tag, string? digest)
    {
        Domain = domain;
        Path = path;
        Tag = tag;
        Digest = digest;
    }

    /// <summary>Registry host, with port if given: <c>docker.io</c>, <c>localhost:5000</c>, <c>[::1]:5000</c>.</summary>
    public string Domain { get; }

    /// <summary>Repository path inside the registry: <c>library/busybox</c>.</summary>
    public string Path { get; }

    public string? Tag { get; }

    /// <summary><c>algorithm:hex</c>, validated (sha256, sha384, sha512).</summary>
    public string? Digest { get; }

    /// <summary>Fully qualified name: <c>docker.io/library/busybox</c>.</summary>
    public string Name => $"{Domain}/{Path}";

    /// <summary>The short name Docker shows: <c>docker.io/library/x</c> → <c>x</c>, <c>docker.io/u/x</c> → <c>u/x</c>.</summary>
    public string FamiliarName =>
        Domain != DefaultDomain ? Name
        : Path.StartsWith(OfficialRepoPrefix, StringComparison.Ordinal) && Path.IndexOf('/', OfficialRepoPrefix.Length) < 0 ? Path[OfficialRepoPrefix.Length..]
        : Path;

    public string FamiliarString => FamiliarName + Suffix;

    public override string ToString() => Name + Suffix;

    private string Suffix => (Tag is null ? "" : ":" + Tag) + (Digest is null ? "" : "@" + Digest);

    public ImageReference WithTag(string tag) =>
        TagPattern().IsMatch(tag) ? new ImageReference(Domain, Path, tag, Digest) : throw new InvalidReferenceException("invalid tag format");

    public ImageReference WithoutTag() => new(Domain, Path, null, Digest);

    /// <summary>Docker's <c>ParseDockerRef</c>: normalised, <c>:latest</c> if neither tag nor digest, digest wins over tag.</summary>
    public static ImageReference ParseDockerRef(string text)
    {
        var r = Parse(text);
        if (r.Digest is not null) return r.Tag is null ? r : r.WithoutTag();
        return r.Tag is null ? new ImageReference(r.Domain, r.Path, DefaultTag, null) : r;
    }

    public static bool TryParse(string? text, out ImageReference? reference)
    {
        reference = null;
        if (text is null) return false;
        try
        {
            reference = Parse(text);
            return true;
        }
        catch (InvalidReferenceException)
        {
            return false;
        }
    }

    /// <summary>Docker's <c>ParseNormalizedNamed</c>.</summary>
    public static ImageReference Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Length == 0) throw new InvalidReferenceException("invalid reference format");
        if (IdentifierPattern().IsMatch(text))
            throw new InvalidReferenceException($"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings");

        var (domain, remainder) = SplitDockerDomain(text);
        var tagSep = remainder.IndexOf(':');
        var remoteName = tagSep >= 0 ? remainder[..tagSep] : remainder;
        if (!remoteName.Equals(remoteName.ToLowerInvariant(), StringComparison.Ordinal))
            throw new InvalidReferenceException("invalid reference format: repository name must be lowercase");

        if (!DomainPattern().IsMatch(domain)) throw new InvalidReferenceException("invalid reference format");
        var m = RemainderPattern().Match(remainder);
        if (!m.Success) throw new InvalidReferenceException("invalid reference format");
        var path = m.Groups["path"].Value;
        if (domain.Length + 1 + path.Length > NameTotalLengthMax)
            throw new InvalidReferenceException($"repository name must not be more than {NameTotalLengthMax} characters");
        var tag = m.Groups["tag"].Success ? m.Groups["tag"].Value : null;
        var digest = m.Groups["digest"].Success ? ValidateDigest(m.Groups["digest"].Value) : null;
        return new ImageReference(domain, path, tag, digest);
    }

    /// <summary>The first component is a registry if it has a '.' or ':', is <c>localhost</c>, or has uppercase letters.</summary>
    private static (string Domain, string Remainder) SplitDockerDomain(string name)
    {
        string domain, remainder;
        var i = name.IndexOf('/');
        if (i < 0 || (name.AsSpan(0, i).IndexOfAny('.', ':') < 0 && name[..i] != "localhost"
                      && name[..i].Equals(name[..i].ToLowerInvariant(), StringComparison.Ordinal)))
        {
            (domain, remainder) = (DefaultDomain, name);
        }
        else
        {
            (domain, remainder) = (name[..i], name[(i + 1)..]);
        }
        if (domain == LegacyDefaultDomain) domain = DefaultDomain;
        if (domain == DefaultDomain && !remainder.Contains('/')) remainder = OfficialRepoPrefix + remainder;
        return (domain, remainder);
    }

    private static string ValidateDigest(string digest)
    {
        var sep = digest.IndexOf(':');
        var (algorithm, hex) = (digest[..sep], digest[(sep + 1)..]);
        int length = algorithm switch
        {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => throw new InvalidReferenceException("unsupported digest algorithm"),
        };
        if (hex.Length != length) throw new InvalidReferenceException("invalid checksum digest length");
        foreach (var c in hex)
            if (c is not (>= '0' and <= '9' or >= 'a' and <= 'f')) throw new InvalidReferenceException("invalid checksum digest format");
        return digest;
    }

    // The grammar of distribution/reference/regexp.go; \w spelled out (RE2's \w is ASCII only).
    private const string Alnum = "[a-z0-9]+";
    private const string Separator = "(?:[._]|__|[-]+)";
    private const string PathComponent = Alnum + "(?:" + Separator + Alnum + ")*";
    private const string RemoteName = PathComponent + "(?:/" + PathComponent + ")*";
    private const string DomainComponent = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
    private const string Host = "(?:" + DomainComponent + "(?:\\." + DomainComponent + ")*|\\[[a-fA-F0-9:]+\\])";
    private const string TagText = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
    private const string DigestText = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";

    [GeneratedRegex("^" + Host + "(?::[0-9]+)?$", RegexOptions.CultureInvariant)]
    private static partial Regex DomainPattern();

    [GeneratedRegex("^(?<path>" + RemoteName + ")(?::(?<tag>" + TagText + "))?(?:@(?<digest>" + DigestText + "))?$", RegexOptions.CultureInvariant)]
    private static partial Regex RemainderPattern();

    [GeneratedRegex("^" + TagText + "$", RegexOptions.CultureInvariant)]
    private static partial Regex TagPattern();

    [GeneratedRegex("^[a-f0-9]{64}$", RegexOptions.CultureInvariant)]
    private static partial Regex IdentifierPattern();
}
