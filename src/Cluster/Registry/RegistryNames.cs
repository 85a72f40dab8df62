using System.Text.RegularExpressions;

namespace Flotilla.Cluster.Registry;

/// <summary>The distribution spec's grammar for repository names and tags.</summary>
public static partial class RegistryNames
{
    /// <summary>Clients limit <c>host/name</c> to 255 characters; the name alone can be no longer.</summary>
    public const int MaxRepositoryLength = 255;

    public static bool IsValidRepository(string? name) =>
        name is { Length: > 0 and <= MaxRepositoryLength } && RepositoryPattern().IsMatch(name);

    public static bool IsValidTag(string? tag) => tag is { Length: > 0 and <= 128 } && TagPattern().IsMatch(tag);

    [GeneratedRegex(@"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$", RegexOptions.CultureInvariant)]
    private static partial Regex RepositoryPattern();

    [GeneratedRegex(@"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$", RegexOptions.CultureInvariant)]
    private static partial Regex TagPattern();
}

/// <summary>A registry request refused with one of the spec's error codes.</summary>
public sealed class RegistryException(string code, string message, string? detail = null) : Exception(message)
{
    public string Code { get; } = code;
    public string? Detail { get; } = detail;
}
