using MessagePack;

namespace Flotilla.Contracts.Registry;

/// <summary>What a registry user may do to repositories. <c>pull</c> reads, <c>push</c> writes, <c>delete</c> removes.</summary>
public static class RegistryActions
{
    public const string Pull = "pull";
    public const string Push = "push";
    public const string Delete = "delete";
    /// <summary>The <c>registry:catalog:*</c> scope: listing every repository.</summary>
    public const string Catalog = "*";

    public static readonly IReadOnlyList<string> All = [Pull, Push, Delete];
}

/// <summary>An event in a registry user's stream (<c>registry-user-&lt;name&gt;</c>).</summary>
public interface IRegistryUserEvent
{
    string Name { get; }
}

/// <summary>A user was created (or re-created after removal). The password is kept only as a salted hash.</summary>
/// <param name="Repositories">
/// The repository patterns (<see cref="RepositoryPattern"/>) the rights hold on; null (events written before
/// per-repository rights) means every repository.
/// </param>
[MessagePackObject(true)]
public sealed record RegistryUserAdded(string Name, string PasswordHash, IReadOnlyList<string> Rights, DateTimeOffset At,
    IReadOnlyList<string>? Repositories = null) : IRegistryUserEvent;

[MessagePackObject(true)]
public sealed record RegistryUserPasswordChanged(string Name, string PasswordHash, DateTimeOffset At) : IRegistryUserEvent;

/// <summary>The same password, hashed again with more iterations at a successful login (see <c>PasswordHasher</c>).</summary>
[MessagePackObject(true)]
public sealed record RegistryUserPasswordRehashed(string Name, string PasswordHash, DateTimeOffset At) : IRegistryUserEvent;

[MessagePackObject(true)]
public sealed record RegistryUserRemoved(string Name, DateTimeOffset At) : IRegistryUserEvent;

/// <summary>
/// The registry refused someone: wrong credentials, or a user (or anonymous) asking for an action it lacks.
/// Stored in <c>registry-access</c>; the metadata user is who asked.
/// </summary>
[MessagePackObject(true)]
public sealed record RegistryAccessDenied(string User, string Resource, IReadOnlyList<string> Actions, string Reason,
    string? RemoteAddress, DateTimeOffset At, int Repeats = 0) : IRegistryAccessEvent;

/// <summary>
/// One token request's refused scopes, as one event (a request may ask for up to
/// <c>TokenEndpoint.MaxScopes</c>); stored in <c>registry-access</c> like <see cref="RegistryAccessDenied"/>.
/// </summary>
[MessagePackObject(true)]
public sealed record RegistryScopesDenied(string User, IReadOnlyList<DeniedScope> Scopes, string Reason, string? RemoteAddress,
    DateTimeOffset At) : IRegistryAccessEvent;

/// <param name="Resource"><c>type:name</c>, as in <see cref="RegistryAccessDenied.Resource"/>.</param>
[MessagePackObject(true)]
public sealed record DeniedScope(string Resource, IReadOnlyList<string> Actions);

/// <summary>An event of the <c>registry-access</c> stream: a refusal.</summary>
public interface IRegistryAccessEvent
{
    string User { get; }
    string Reason { get; }
}

public static class RegistryUserStreams
{
    public const string Access = "registry-access";
    public static string Key(string name) => "registry-user-" + name;
}
