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
