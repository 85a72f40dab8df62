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
    /// <summary>Where the key came from: <c>generated</c>, or the data directory file it was migrated from.</summary>
    public string Source { get; set; } = "";
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
