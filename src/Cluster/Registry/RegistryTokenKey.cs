using System.Security.Cryptography;
using Marten;

namespace Flotilla.Cluster.Registry;

/// <summary>
/// The key that signs the registry's bearer tokens: one document per cluster in the shared store, so a token
/// issued by any gateway is accepted by every other. It is a secret of the same standing as the password hashes
/// next to it.
/// </summary>
public sealed class RegistryTokenKey
{
    public const string DocumentId = "registry-token-signing-key";
    public const int MinimumBytes = 32;

    public string Id { get; set; } = DocumentId;
    /// <summary>Base64 of the HMAC key.</summary>
    public string Key { get; set; } = "";
    public DateTimeOffset Created { get; set; }
    /// <summary>Where the key came from: <c>generated</c>, <c>rotated</c>, or the data directory file it was migrated from.</summary>
    public string Source { get; set; } = "";
    /// <summary>The key id in tokens' <c>kid</c> header; empty on keys stored before rotation existed (see <see cref="KidOf"/>).</summary>
    public string Kid { get; set; } = "";
    /// <summary>Set when retired: tokens it signed are no longer accepted.</summary>
    public DateTimeOffset? Retired { get; set; }

    /// <summary>A key's id: the first 16 hex digits of the SHA-256 of the key (names it without revealing it).</summary>
    public static string KidOf(byte[] key) => Convert.ToHexStringLower(SHA256.HashData(key))[..16];
}

/// <summary>One key of the ring, decoded.</summary>
public sealed record RegistrySigningKey(string Kid, byte[] Key, DateTimeOffset Created);

/// <summary>The keys tokens may carry: <see cref="Signing"/> signs new ones (the newest), all verify.</summary>
public sealed record RegistryKeyRing(IReadOnlyList<RegistrySigningKey> Keys)
{
    public RegistrySigningKey Signing => Keys[0];
}

/// <summary>Reads the cluster's token key, creating it once; concurrent creators agree on the first insert.</summary>
public sealed class RegistryTokenKeyStore(IDocumentStore store)
{
    /// <summary>
    /// The stored key; when none is stored yet, inserts <paramref name="legacyKey"/> (a key an older version kept in
    /// the data directory, so tokens it issued stay valid) or a fresh random one. An insert that loses to another
    /// process's reads the winner's key instead.
    /// </summary>
    public async Task<byte[]> LoadOrCreateAsync(byte[]? legacyKey, string? legacySource, CancellationToken cancellationToken = default)
    {
        if (await LoadAsync(cancellationToken) is { } existing) return existing;

        var useLegacy = legacyKey is { Length: >= RegistryTokenKey.MinimumBytes };
        var candidate = useLegacy ? legacyKey! : RandomNumberGenerator.GetBytes(RegistryTokenKey.MinimumBytes);
        await using (var session = store.LightweightSession())
        {
            session.Insert(new RegistryTokenKey
            {
                Key = Convert.ToBase64String(candidate),
                Created = DateTimeOffset.UtcNow,
                Source = useLegacy ? legacySource ?? "data directory" : "generated",
            });
            try
            {
                await session.SaveChangesAsync(cancellationToken);
                return candidate;
            }
            catch (Exception) when (!cancellationToken.IsCancellationRequested)
            {
                // Whatever Marten wraps the duplicate key in: if another gateway created the key first, its key is
                // the cluster's; any other failure leaves no key behind and is rethrown.
                if (await LoadAsync(cancellationToken) is { } winner) return winner;
                throw;
            }
        }
    }

    /// <summary>
    /// The keys in use, newest (the signing key) first; creates the first as <see cref="LoadOrCreateAsync"/> does.
    /// </summary>
    public async Task<RegistryKeyRing> LoadRingAsync(byte[]? legacyKey, string? legacySource, CancellationToken cancellationToken = default)
    {
        await LoadOrCreateAsync(legacyKey, legacySource, cancellationToken);
        await using var query = store.QuerySession();
        var stored = await query.Query<RegistryTokenKey>().ToListAsync(cancellationToken);
        var keys = stored.Where(k => k.Retired is null)
            .Select(k => (Doc: k, Key: Convert.FromBase64String(k.Key)))
            .Where(k => k.Key.Length >= RegistryTokenKey.MinimumBytes)
            .OrderByDescending(k => k.Doc.Created)
            .Select(k => new RegistrySigningKey(k.Doc.Kid is { Length: > 0 } kid ? kid : RegistryTokenKey.KidOf(k.Key), k.Key, k.Doc.Created))
            .ToList();
        if (keys.Count == 0) throw new InvalidOperationException("every registry token key is retired: rotate to make a new one");
        return new RegistryKeyRing(keys);
    }

    /// <summary>Makes a new signing key; the others keep verifying the tokens they signed until retired.</summary>
    public async Task<RegistrySigningKey> RotateAsync(CancellationToken cancellationToken = default)
    {
        var key = RandomNumberGenerator.GetBytes(RegistryTokenKey.MinimumBytes);
        var kid = RegistryTokenKey.KidOf(key);
        var now = DateTimeOffset.UtcNow;
        await using var session = store.LightweightSession();
        session.Insert(new RegistryTokenKey
        {
            Id = $"{RegistryTokenKey.DocumentId}-{kid}",
            Key = Convert.ToBase64String(key),
            Created = now,
            Source = "rotated",
            Kid = kid,
        });
        await session.SaveChangesAsync(cancellationToken);
        return new RegistrySigningKey(kid, key, now);
    }

    /// <summary>Stops accepting tokens signed with <paramref name="kid"/>; refused for the signing key (rotate first).</summary>
    public async Task RetireAsync(string kid, CancellationToken cancellationToken = default)
    {
        var ring = await LoadRingAsync(null, null, cancellationToken);
        if (ring.Signing.Kid == kid)
            throw new OperationRejectedException(Contracts.RejectionCode.Conflict,
                $"key {kid} signs new tokens: rotate to a new key before retiring it");
        await using var session = store.LightweightSession();
        var docs = await session.Query<RegistryTokenKey>().ToListAsync(cancellationToken);
        var doc = docs.FirstOrDefault(d => d.Retired is null && (d.Kid is { Length: > 0 } k ? k : RegistryTokenKey.KidOf(Convert.FromBase64String(d.Key))) == kid)
            ?? throw new OperationRejectedException(Contracts.RejectionCode.NotFound, $"no such key in use: {kid}");
        doc.Retired = DateTimeOffset.UtcNow;
        session.Store(doc);
        await session.SaveChangesAsync(cancellationToken);
    }

    private async Task<byte[]?> LoadAsync(CancellationToken cancellationToken)
    {
        await using var query = store.QuerySession();
        var stored = await query.LoadAsync<RegistryTokenKey>(RegistryTokenKey.DocumentId, cancellationToken);
        if (stored is null) return null;
        var key = Convert.FromBase64String(stored.Key);
        if (key.Length < RegistryTokenKey.MinimumBytes)
            throw new InvalidOperationException($"the stored registry token key is {key.Length} bytes, fewer than {RegistryTokenKey.MinimumBytes}");
        return key;
    }
}
