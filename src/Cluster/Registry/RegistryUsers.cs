using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Flotilla.Cluster.Audit;
using Flotilla.Cluster.EventStore;
using Flotilla.Contracts;
using Flotilla.Contracts.Registry;
using Marten;
using Marten.Events.Aggregation;

namespace Flotilla.Cluster.Registry;

/// <summary>Read model of one registry user, folded from <c>registry-user-&lt;name&gt;</c>.</summary>
public sealed class RegistryUserView
{
    public string Id { get; set; } = "";
    public string Name { get; set; } = "";
    public string PasswordHash { get; set; } = "";
    public List<string> Rights { get; set; } = [];
    /// <summary>Where <see cref="Rights"/> hold: repository patterns; null (users from before these) = every repository.</summary>
    public List<string>? Repositories { get; set; }
    public DateTimeOffset Created { get; set; }
    public bool Removed { get; set; }
}

public sealed class RegistryUserViewProjection : SingleStreamProjection<RegistryUserView, string>
{
    public static RegistryUserView Create(RegistryUserAdded e) => Apply(e, new RegistryUserView());

    public static RegistryUserView Apply(RegistryUserAdded e, RegistryUserView view)
    {
        view.Id = RegistryUserStreams.Key(e.Name);
        view.Name = e.Name;
        view.PasswordHash = e.PasswordHash;
        view.Rights = [.. e.Rights];
        view.Repositories = e.Repositories is null ? null : [.. e.Repositories];
        view.Created = e.At;
        view.Removed = false;
        return view;
    }

    public static RegistryUserView Apply(RegistryUserPasswordChanged e, RegistryUserView view)
    {
        view.PasswordHash = e.PasswordHash;
        return view;
    }

    public static RegistryUserView Apply(RegistryUserPasswordRehashed e, RegistryUserView view)
    {
        view.PasswordHash = e.PasswordHash;
        return view;
    }

    // Kept (flagged) rather than deleted, so the stream can add the same name again later.
    public static RegistryUserView Apply(RegistryUserRemoved e, RegistryUserView view)
    {
        view.Removed = true;
        view.PasswordHash = "";
        return view;
    }
}

/// <summary>
/// Salted PBKDF2-SHA256 password hashes, <c>pbkdf2-sha256$&lt;iterations&gt;$&lt;salt&gt;$&lt;hash&gt;</c>; the iteration
/// count travels with the hash, so hashes made with fewer iterations still verify and are redone at the next login.
/// The framework's PBKDF2 is a well-kept primitive. 600,000 iterations (OWASP's figure for PBKDF2-SHA256) cost a
/// few hundred ms: paid once per token request with credentials, never per registry request.
/// </summary>
public static class PasswordHasher
{
    private const string Scheme = "pbkdf2-sha256";
    public const int Iterations = 600_000;

    public static string Hash(string password, int iterations = Iterations)
    {
        var salt = RandomNumberGenerator.GetBytes(16);
        var hash = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password), salt, iterations, HashAlgorithmName.SHA256, 32);
        return $"{Scheme}${iterations}${Convert.ToBase64String(salt)}${Convert.ToBase64String(hash)}";
    }

    public static bool Verify(string password, string encoded) => Verify(password, encoded, out _);

    /// <param name="outdated">The hash is good but made with fewer than <see cref="Iterations"/>: hash the password again.</param>
    public static bool Verify(string password, string encoded, out bool outdated)
    {
        outdated = false;
        var parts = encoded.Split('$');
        if (parts.Length != 4 || parts[0] != Scheme || !int.TryParse(parts[1], out var iterations) || iterations < 1) return false;
        try
        {
            var salt = Convert.FromBase64String(parts[2]);
            var expected = Convert.FromBase64String(parts[3]);
            var actual = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password), salt, iterations, HashAlgorithmName.SHA256, expected.Length);
            var good = CryptographicOperations.FixedTimeEquals(actual, expected);
            outdated = good && iterations < Iterations;
            return good;
        }
        catch (FormatException)
        {
            return false;
        }
    }
}

/// <summary>Registry users as events: add, change password, remove, authenticate; and the record of refusals.</summary>
public sealed partial class RegistryUserService(IDocumentStore store, IEventJournal journal, string nodeName)
{
    /// <summary>What a new user may do unless told otherwise: read and write, not delete.</summary>
    public static readonly IReadOnlyList<string> DefaultRights = [RegistryActions.Pull, RegistryActions.Push];

    private static readonly TimeSpan UserCountTtl = TimeSpan.FromSeconds(5);
    // A cache of "does any user exist" (asked on every registry request); other gateways' changes show within the TTL.
    private volatile UserCount? _anyUsers;

    private sealed record UserCount(bool Any, DateTimeOffset At);

    [GeneratedRegex("^[a-z0-9][a-z0-9._-]{0,63}$")]
    private static partial Regex NamePattern();

    public const int MinPasswordLength = 8;
    public const int MaxPasswordLength = 1024;

    /// <summary>The minimal policy: long enough, not absurdly long, and not the user name.</summary>
    public static void ValidatePassword(string name, string password)
    {
        if (password.Length < MinPasswordLength)
            throw new OperationRejectedException(RejectionCode.InvalidArgument,
                $"the password is too short: at least {MinPasswordLength} characters");
        if (password.Length > MaxPasswordLength)
            throw new OperationRejectedException(RejectionCode.InvalidArgument,
                $"the password is too long: at most {MaxPasswordLength} characters");
        if (string.Equals(password, name, StringComparison.OrdinalIgnoreCase))
            throw new OperationRejectedException(RejectionCode.InvalidArgument, "the password must not be the user name");
    }

    /// <summary>The repositories a new user's rights hold on unless told otherwise: all of them.</summary>
    public static readonly IReadOnlyList<string> DefaultRepositories = [RepositoryPattern.Every];

    public static void Validate(string name, IReadOnlyList<string> rights, IReadOnlyList<string>? repositories = null)
    {
        if (!NamePattern().IsMatch(name))
            throw new OperationRejectedException(RejectionCode.InvalidArgument,
                $"invalid user name '{name}': lowercase letters, digits, '.', '_' and '-', at most 64 characters");
        var unknown = rights.Where(r => !RegistryActions.All.Contains(r)).ToList();
        if (unknown.Count > 0 || rights.Count == 0)
            throw new OperationRejectedException(RejectionCode.InvalidArgument,
                $"invalid rights '{string.Join(",", rights)}': choose from {string.Join(", ", RegistryActions.All)}");
        if (repositories is { Count: 0 })
            throw new OperationRejectedException(RejectionCode.InvalidArgument, "at least one repository pattern is required ('*' = every repository)");
        var badPattern = repositories?.FirstOrDefault(p => !RepositoryPattern.IsValid(p));
        if (badPattern is not null)
            throw new OperationRejectedException(RejectionCode.InvalidArgument,
                $"invalid repository pattern '{badPattern}': a repository name in which '*' matches any characters, '/' included (e.g. team/*)");
    }

    /// <param name="repositories">Repository patterns the rights hold on (<see cref="RepositoryPattern"/>); null = every repository.</param>
    public async Task<RegistryUserView> AddAsync(string name, string password, IReadOnlyList<string> rights, RequestOrigin origin,
        CancellationToken cancellationToken = default, IReadOnlyList<string>? repositories = null)
    {
        repositories ??= DefaultRepositories;
        Validate(name, rights, repositories);
        if (string.IsNullOrEmpty(password))
            throw new OperationRejectedException(RejectionCode.InvalidArgument, "a password is required");
        ValidatePassword(name, password);
        var stream = await journal.ReadAsync(RegistryUserStreams.Key(name), cancellationToken);
        var current = await FindAsync(name, cancellationToken);
        if (current is { Removed: false })
            throw new OperationRejectedException(RejectionCode.Conflict, $"user {name} already exists");
        var added = new RegistryUserAdded(name, PasswordHasher.Hash(password), rights.Distinct().ToList(), DateTimeOffset.UtcNow,
            repositories.Distinct().ToList());
        await AppendAsync(name, stream.Version, added, origin, cancellationToken);
        return (await FindAsync(name, cancellationToken))!;
    }

    public async Task SetPasswordAsync(string name, string password, RequestOrigin origin, CancellationToken cancellationToken = default)
    {
        if (string.IsNullOrEmpty(password))
            throw new OperationRejectedException(RejectionCode.InvalidArgument, "a password is required");
        ValidatePassword(name, password);
        var stream = await journal.ReadAsync(RegistryUserStreams.Key(name), cancellationToken);
        if (await FindAsync(name, cancellationToken) is not { Removed: false })
            throw new OperationRejectedException(RejectionCode.NotFound, $"no such user: {name}");
        await AppendAsync(name, stream.Version, new RegistryUserPasswordChanged(name, PasswordHasher.Hash(password), DateTimeOffset.UtcNow),
            origin, cancellationToken);
    }

    public async Task RemoveAsync(string name, RequestOrigin origin, CancellationToken cancellationToken = default)
    {
        var stream = await journal.ReadAsync(RegistryUserStreams.Key(name), cancellationToken);
        if (await FindAsync(name, cancellationToken) is not { Removed: false })
            throw new OperationRejectedException(RejectionCode.NotFound, $"no such user: {name}");
        await AppendAsync(name, stream.Version, new RegistryUserRemoved(name, DateTimeOffset.UtcNow), origin, cancellationToken);
    }

    public async Task<IReadOnlyList<RegistryUserView>> ListAsync(CancellationToken cancellationToken = default)
    {
        await using var session = store.QuerySession();
        var users = await session.Query<RegistryUserView>().Where(u => !u.Removed).OrderBy(u => u.Name).ToListAsync(cancellationToken);
        return users;
    }

    /// <summary>The user with these credentials, or null. Unknown user and wrong password look the same to the caller.</summary>
    public async Task<RegistryUserView?> AuthenticateAsync(string name, string password, CancellationToken cancellationToken = default)
    {
        var user = await FindAsync(name, cancellationToken);
        if (user is not { Removed: false })
        {
            // Same cost either way, so timing does not tell which names exist.
            PasswordHasher.Verify(password, DummyHash.Value);
            return null;
        }
        if (!PasswordHasher.Verify(password, user.PasswordHash, out var outdated)) return null;
        if (outdated) await RehashAsync(user, password, cancellationToken);
        return user;
    }

    /// <summary>
    /// Replaces a hash made with fewer iterations, now that the password is known to be right. Best effort: a
    /// concurrent change of the user wins, and this login still succeeds; the next one tries again.
    /// </summary>
    private async Task RehashAsync(RegistryUserView user, string password, CancellationToken cancellationToken)
    {
        var stream = await journal.ReadAsync(RegistryUserStreams.Key(user.Name), cancellationToken);
        try
        {
            await AppendAsync(user.Name, stream.Version, new RegistryUserPasswordRehashed(user.Name, PasswordHasher.Hash(password), DateTimeOffset.UtcNow),
                new RequestOrigin(RequestOrigin.SystemUser, Guid.NewGuid().ToString("N")), cancellationToken);
        }
        catch (StreamVersionConflictException)
        {
        }
    }

    public async Task<bool> AnyUsersAsync(CancellationToken cancellationToken = default)
    {
        if (_anyUsers is { } cached && DateTimeOffset.UtcNow - cached.At < UserCountTtl) return cached.Any;
        await using var session = store.QuerySession();
        var any = await session.Query<RegistryUserView>().Where(u => !u.Removed).AnyAsync(cancellationToken);
        _anyUsers = new UserCount(any, DateTimeOffset.UtcNow);
        return any;
    }

    /// <summary>
    /// Appends a refusal to <c>registry-access</c> without reading the stream (<see cref="AuditStreamAppender"/>), so
    /// the cost does not grow with the stream. <c>/token</c>'s refusals come here directly (it throttles its own floods).
    /// </summary>
    public Task RecordDenialAsync(IRegistryAccessEvent denial, RequestOrigin origin, CancellationToken cancellationToken = default) =>
        _access.AppendAsync(denial, origin, cancellationToken);

    /// <summary>
    /// A refused <c>/v2</c> request: the first of its address and reason is recorded at once, repeats within the
    /// window are counted in the next event (<see cref="RegistryAccessDenied.Repeats"/>) instead of each written.
    /// </summary>
    /// <param name="credential">How the caller asked (with or without a token, method and path): a different request, a different kind.</param>
    public async Task RecordRefusedRequestAsync(RegistryAccessDenied denial, RequestOrigin origin, string credential = "",
        CancellationToken cancellationToken = default)
    {
        var target = $"{denial.User} {credential} {denial.Resource} {string.Join(",", denial.Actions)}";
        if (!_refusedRequests.ShouldRecord("v2", denial.RemoteAddress, denial.Reason, target, out var repeats)) return;
        await _access.AppendAsync(denial with { Repeats = repeats }, origin, cancellationToken);
    }

    private readonly AuditStreamAppender _access = new(journal, RegistryUserStreams.Access, nodeName);
    private readonly DenialWindow _refusedRequests = new();

    private async Task<RegistryUserView?> FindAsync(string name, CancellationToken cancellationToken)
    {
        await using var session = store.QuerySession();
        return await session.LoadAsync<RegistryUserView>(RegistryUserStreams.Key(name), cancellationToken);
    }

    private async Task AppendAsync(string name, long version, IRegistryUserEvent e, RequestOrigin origin, CancellationToken cancellationToken)
    {
        await journal.AppendAsync(RegistryUserStreams.Key(name), version, [e], EventMetadata.From(origin, nodeName), cancellationToken);
        _anyUsers = null;
    }

    private static readonly Lazy<string> DummyHash = new(() => PasswordHasher.Hash(Guid.NewGuid().ToString()));
}
