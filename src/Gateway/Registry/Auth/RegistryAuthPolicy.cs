using System.Net;
using Flotilla.Cluster.Registry;
using Flotilla.Contracts.Registry;
using Microsoft.AspNetCore.Http;

namespace Flotilla.Gateway.Registry.Auth;

/// <summary>How the registry decides who may do what.</summary>
/// <param name="LoopbackOnly">The registry listens only on loopback addresses.</param>
/// <param name="AnonymousPull">With users (or beyond loopback), may anyone pull and list without logging in?</param>
/// <param name="Listener">The registry's configured listen address (the default realm's host and port).</param>
/// <param name="Realm">The token realm URL announced in challenges; null derives it from <paramref name="Listener"/>.</param>
public sealed record RegistryAuthOptions(string Service, bool LoopbackOnly, bool AnonymousPull, IPEndPoint? Listener = null, string? Realm = null)
{
    public const string DefaultService = "flotilla-registry";

    /// <summary>
    /// The realm for a challenge on this connection: the configured one, else this listener's address (the connection's
    /// local address when it listens on any address) with the connection's scheme. Never the request's <c>Host</c>
    /// header, which the client chooses: a forged one would send the next client's password elsewhere.
    /// </summary>
    public string RealmFor(HttpContext context)
    {
        if (Realm is { } configured) return configured;
        var local = context.Connection.LocalIpAddress;
        var address = Listener is { } l && !l.Address.Equals(IPAddress.Any) && !l.Address.Equals(IPAddress.IPv6Any) ? l.Address
            : local ?? IPAddress.Loopback;
        if (address.IsIPv4MappedToIPv6) address = address.MapToIPv4();
        var port = Listener?.Port ?? context.Connection.LocalPort;
        var scheme = context.Request.IsHttps ? "https" : "http";
        return $"{scheme}://{new IPEndPoint(address, port)}/token";
    }
}

/// <summary>
/// The rules, in one place. Zero-config like the standalone registry: on loopback with no users everyone may do
/// everything. Once a user exists or the registry listens beyond loopback, push and delete need a user holding that
/// right on a pattern matching the repository; pull needs the same, and catalog a user whose patterns cover every
/// repository, unless anonymous pull is on.
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
            // A user's rights hold on the repositories its patterns match, and a user gets only those (not anonymous
            // pull: a push-only user must not read, e.g. to mount another repository's blob).
            { Type: RegistryScope.Repository } when user is not null =>
                RepositoryPattern.AnyMatches(user.Repositories, requested.Name) ? requested.Actions.Where(user.Rights.Contains) : [],
            { Type: RegistryScope.Repository } when options.AnonymousPull => requested.Actions.Where(a => a == RegistryActions.Pull),
            // The catalog names every repository, so a user limited to some does not get it (unless anyone may).
            { Type: RegistryScope.Registry, Name: "catalog" }
                when (user is not null && RepositoryPattern.CoversEvery(user.Repositories)) || options.AnonymousPull =>
                requested.Actions.Where(a => a == RegistryActions.Catalog),
            _ => [],
        };
        var granted = allowed.ToList();
        return granted.Count == 0 ? null : requested with { Actions = granted };
    }
}
