using Flotilla.Cluster.Registry;
using Flotilla.Contracts.Registry;

namespace Flotilla.Gateway.Registry.Auth;

/// <summary>How the registry decides who may do what.</summary>
/// <param name="LoopbackOnly">The registry listens only on loopback addresses.</param>
/// <param name="AnonymousPull">With users (or beyond loopback), may anyone pull and list without logging in?</param>
public sealed record RegistryAuthOptions(string Service, bool LoopbackOnly, bool AnonymousPull)
{
    public const string DefaultService = "flotilla-registry";
}

/// <summary>
/// The rules, in one place. Zero-config like the standalone registry: on loopback with no users everyone may do
/// everything. Once a user exists or the registry listens beyond loopback, push and delete need a user holding that
/// right; pull and catalog need a user, unless anonymous pull is on.
/// </summary>
public sealed class RegistryAuthPolicy(RegistryAuthOptions options, RegistryUserService users)
{
    public RegistryAuthOptions Options => options;

    /// <summary>Open mode: no checks at all.</summary>
    public async Task<bool> IsOpenAsync(CancellationToken cancellationToken) =>
        options.LoopbackOnly && !await users.AnyUsersAsync(cancellationToken);

    /// <summary>The part of <paramref name="requested"/> that <paramref name="user"/> (null = anonymous) may have.</summary>
    public RegistryScope? Grant(RegistryScope requested, RegistryUserView? user, bool open)
    {
        IEnumerable<string> allowed = requested switch
        {
            _ when open => requested.Actions,
            { Type: RegistryScope.Repository } when user is not null => requested.Actions.Where(user.Rights.Contains),
            { Type: RegistryScope.Repository } when options.AnonymousPull => requested.Actions.Where(a => a == RegistryActions.Pull),
            { Type: RegistryScope.Registry, Name: "catalog" } when user is not null || options.AnonymousPull =>
                requested.Actions.Where(a => a == RegistryActions.Catalog),
            _ => [],
        };
        var granted = allowed.ToList();
        return granted.Count == 0 ? null : requested with { Actions = granted };
    }
}
