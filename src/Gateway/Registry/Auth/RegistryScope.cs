using System.Text.RegularExpressions;
using Flotilla.Contracts.Registry;

namespace Flotilla.Gateway.Registry.Auth;

/// <summary>
/// One access scope of the distribution token spec, <c>resourcetype:resourcename:action[,action]*</c>
/// (<c>repository:foo/bar:pull,push</c>, <c>registry:catalog:*</c>). The name may itself hold one <c>:</c> (a host port).
/// </summary>
public sealed record RegistryScope(string Type, string Name, IReadOnlyList<string> Actions)
{
    public const string Repository = "repository";
    public const string Registry = "registry";

    public static RegistryScope Catalog { get; } = new(Registry, "catalog", [RegistryActions.Catalog]);

    public static bool TryParse(string text, out RegistryScope scope)
    {
        scope = null!;
        var first = text.IndexOf(':');
        var last = text.LastIndexOf(':');
        if (first <= 0 || last == first || last == text.Length - 1) return false;
        var type = text[..first];
        var name = text[(first + 1)..last];
        if (name.Length == 0 || name.Count(c => c == ':') > 1 || type.Any(c => !char.IsAsciiLetterLower(c))) return false;
        var actions = text[(last + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (actions.Length == 0) return false;
        scope = new RegistryScope(type, name, actions.Distinct().ToList());
        return true;
    }

    public override string ToString() => $"{Type}:{Name}:{string.Join(",", Actions)}";
}

/// <summary>What a registry request needs: a scope, or only a valid token (the <c>/v2/</c> base), or nothing.</summary>
public sealed record RequiredAccess(RegistryScope? Scope, bool Anonymous)
{
    public static readonly RequiredAccess None = new(null, true);
    public static readonly RequiredAccess AnyToken = new(null, false);
}

/// <summary>Maps a registry request (method + path) to the access it needs, as distribution's router does.</summary>
public static partial class RegistryRoutes
{
    [GeneratedRegex("^/v2/(?<name>.+)/(?:manifests/(?<ref>[^/]+)|blobs/uploads/?(?<upload>[^/]*)|blobs/(?<digest>[^/]+)|tags/list|referrers/(?<subject>[^/]+))$")]
    private static partial Regex RepositoryPath();

    public static RequiredAccess For(string method, string path)
    {
        if (path is "/token" || path.StartsWith("/v1/_ping", StringComparison.Ordinal)) return RequiredAccess.None;
        if (path.StartsWith("/v1/search", StringComparison.Ordinal) || path == "/v2/_catalog")
            return new RequiredAccess(RegistryScope.Catalog, false);
        if (path is "/v2/" or "/v2") return RequiredAccess.AnyToken;
        var match = RepositoryPath().Match(path);
        if (!match.Success) return RequiredAccess.AnyToken;

        var upload = match.Groups["upload"].Success;
        var action = method switch
        {
            "GET" or "HEAD" when !upload => RegistryActions.Pull,
            "DELETE" when !upload => RegistryActions.Delete,
            _ => RegistryActions.Push,
        };
        return new RequiredAccess(new RegistryScope(RegistryScope.Repository, match.Groups["name"].Value, [action]), false);
    }
}
