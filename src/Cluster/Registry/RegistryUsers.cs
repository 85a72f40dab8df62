using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
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
        view.Created = e.At;
        view.Removed = false;
        return view;
    }

    public static RegistryUserView Apply(RegistryUserPasswordChanged e, RegistryUserView view)
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
/// Salted PBKDF2-SHA256 password hashes, <c>pbkdf2-sha256$&lt;iterations&gt;$&lt;salt&gt;$&lt;hash&gt;</c>.
/// The framework's PBKDF2 is a well-kept primitive. 100k iterations cost ~50 ms here: paid once per token request
/// (basic credentials go only to the token realm), never per registry request.
/// </summary>
public static class PasswordHasher
{
    private const string Scheme = "pbkdf2-sha256";
    private const int Iterations = 100_000;

    public static string Hash(string password)
    {
        var salt = RandomNumberGenerator.GetBytes(16);
        var hash = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password), salt, Iterations, HashAlgorithmName.SHA256, 32);
        return $"{Scheme}${Iterations}${Convert.ToBase64String(salt)}${Convert.ToBase64String(hash)}";
    }

    public static bool Verify(string password, string encoded)
    {
        var parts = encoded.Split('$');
        if (parts.Length != 4 || parts[0] != Scheme || !int.TryParse(parts[1], out var iterations) || iterations < 1) return false;
        try
        {
            var salt = Convert.FromBase64String(parts[2]);
            var expected = Convert.FromBase64String(parts[3]);
            var actual = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password), salt, iterations, HashAlgorithmName.SHA256, expected.Length);
            return CryptographicOperations.FixedTimeEquals(actual, expected);
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

    public static void Validate(string name, IReadOnlyList<string> rights)
    {
        if (!NamePattern().IsMatch(name))
            throw new OperationRejectedException(RejectionCode.InvalidArgument,
                $"invalid user name '{name}': lowercase letters, digits, '.', '_' and '-', at most 64 characters");
        var unknown = rights.Where(r => !RegistryActions.All.Contains(r)).ToList();
        if (unknown.Count > 0 || rights.Count == 0)
            throw new OperationRejectedException(RejectionCode.InvalidArgument,
                $"invalid rights '{string.Join(",", rights)}': choose from {string.Join(", ", RegistryActions.All)}");
    }

    public async Task<RegistryUserView> AddAsync(string name, string password, IReadOnlyList<string> rights, RequestOrigin origin,
        CancellationToken cancellationToken = default)
    {
        Validate(name, rights);
        if (string.IsNullOrEmpty(password))
            throw new OperationRejectedException(RejectionCode.InvalidArgument, "a password is required");
        var stream = await journal.ReadAsync(RegistryUserStreams.Key(name), cancellationToken);
        var current = await FindAsync(name, cancellationToken);
        if (current is { Removed: false })
            throw new OperationRejectedException(RejectionCode.Conflict, $"user {name} already exists");
        var added = new RegistryUserAdded(name, PasswordHasher.Hash(password), rights.Distinct().ToList(), DateTimeOffset.UtcNow);
        await AppendAsync(name, stream.Version, added, origin, cancellationToken);
        return (await FindAsync(name, cancellationToken))!;
    }

    public async Task SetPasswordAsync(string name, string password, RequestOrigin origin, CancellationToken cancellationToken = default)
    {
        if (string.IsNullOrEmpty(password))
            throw new OperationRejectedException(RejectionCode.InvalidArgument, "a password is required");
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
        return PasswordHasher.Verify(password, user.PasswordHash) ? user : null;
    }

    public async Task<bool> AnyUsersAsync(CancellationToken cancellationToken = default)
    {
        if (_anyUsers is { } cached && DateTimeOffset.UtcNow - cached.At < UserCountTtl) return cached.Any;
        await using var session = store.QuerySession();
        var any = await session.Query<RegistryUserView>().Where(u => !u.Removed).AnyAsync(cancellationToken);
        _anyUsers = new UserCount(any, DateTimeOffset.UtcNow);
        return any;
    }

    public async Task RecordDenialAsync(RegistryAccessDenied denial, RequestOrigin origin, CancellationToken cancellationToken = default)
    {
        // Unversioned appends from several requests can still collide on the stream's next version; retry those.
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                var stream = await journal.ReadAsync(RegistryUserStreams.Access, cancellationToken);
                await journal.AppendAsync(RegistryUserStreams.Access, stream.Version, [denial],
                    EventMetadata.From(origin, nodeName), cancellationToken);
                return;
            }
            catch (StreamVersionConflictException) when (attempt < 5)
            {
            }
        }
    }

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
