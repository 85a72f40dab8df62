using Flotilla.Cluster.Registry;

namespace Flotilla.Gateway.Registry.Auth;

/// <summary>
/// The gateway's <see cref="RegistryTokens"/>, made on first use with the cluster's key ring from the store (so an
/// all-in-one on loopback with no users never needs it), and re-read every <paramref name="refresh"/> so a key
/// rotated or retired through any gateway takes effect on all. A key file an older version left in the data directory
/// is offered as the cluster's key when none is stored yet, so tokens it issued stay good; the file is left in place.
/// A failed lookup (store down) is retried on the next request; a failed refresh keeps the ring it has.
/// </summary>
public sealed class RegistryTokenSource(RegistryTokenKeyStore keys, string legacyKeyDirectory, string service, TimeSpan lifetime,
    TimeSpan? refresh = null)
{
    public const string LegacyKeyFile = "token-signing.key";
    public static readonly TimeSpan DefaultRefresh = TimeSpan.FromSeconds(30);

    private readonly SemaphoreSlim _gate = new(1, 1);
    private volatile Loaded? _tokens;

    private sealed record Loaded(RegistryTokens Tokens, DateTimeOffset At);

    public string Service => service;
    public TimeSpan Lifetime => lifetime;

    /// <summary>
    /// Checks a token; one whose <c>kid</c> this gateway does not know yet (another gateway rotated) makes it re-read the
    /// ring first, at most once a second, so a new key works everywhere at once rather than after the refresh.
    /// </summary>
    public async Task<GrantedAccess?> ValidateAsync(string token, CancellationToken cancellationToken)
    {
        var tokens = await GetAsync(cancellationToken);
        if (await tokens.ValidateAsync(token) is { } granted) return granted;
        string? kid;
        try
        {
            kid = new Microsoft.IdentityModel.JsonWebTokens.JsonWebToken(token).Kid;
        }
        catch (ArgumentException)
        {
            return null;
        }
        if (string.IsNullOrEmpty(kid) || tokens.Ring.Keys.Any(k => k.Kid == kid) || _tokens is not { } loaded ||
            DateTimeOffset.UtcNow - loaded.At < TimeSpan.FromSeconds(1))
            return null;
        return await (await GetAsync(cancellationToken, force: true)).ValidateAsync(token);
    }

    public async ValueTask<RegistryTokens> GetAsync(CancellationToken cancellationToken, bool force = false)
    {
        var every = force ? TimeSpan.Zero : refresh ?? DefaultRefresh;
        if (_tokens is { } ready && DateTimeOffset.UtcNow - ready.At < every) return ready.Tokens;
        await _gate.WaitAsync(cancellationToken);
        try
        {
            if (_tokens is { } made && DateTimeOffset.UtcNow - made.At < every) return made.Tokens;
            var legacyPath = Path.Combine(legacyKeyDirectory, LegacyKeyFile);
            var legacy = File.Exists(legacyPath) ? await File.ReadAllBytesAsync(legacyPath, cancellationToken) : null;
            try
            {
                var ring = await keys.LoadRingAsync(legacy, legacyPath, cancellationToken);
                _tokens = new Loaded(new RegistryTokens(ring, service, lifetime), DateTimeOffset.UtcNow);
            }
            catch (Exception) when (_tokens is not null && !cancellationToken.IsCancellationRequested)
            {
                // Keep verifying with the ring we have; the next request tries again.
            }
            return _tokens!.Tokens;
        }
        finally
        {
            _gate.Release();
        }
    }
}
