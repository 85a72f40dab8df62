using Flotilla.Cluster.Registry;

namespace Flotilla.Gateway.Registry.Auth;

/// <summary>
/// The gateway's <see cref="RegistryTokens"/>, made on first use with the cluster's key from the store (so an
/// all-in-one on loopback with no users never needs it). A key file an older version left in the data directory is
/// offered as the cluster's key when none is stored yet, so tokens it issued stay good; the file is left in place.
/// A failed lookup (store down) is retried on the next request.
/// </summary>
public sealed class RegistryTokenSource(RegistryTokenKeyStore keys, string legacyKeyDirectory, string service, TimeSpan lifetime)
{
    public const string LegacyKeyFile = "token-signing.key";

    private readonly SemaphoreSlim _gate = new(1, 1);
    private volatile RegistryTokens? _tokens;

    public string Service => service;
    public TimeSpan Lifetime => lifetime;

    public async ValueTask<RegistryTokens> GetAsync(CancellationToken cancellationToken)
    {
        if (_tokens is { } ready) return ready;
        await _gate.WaitAsync(cancellationToken);
        try
        {
            if (_tokens is { } made) return made;
            var legacyPath = Path.Combine(legacyKeyDirectory, LegacyKeyFile);
            var legacy = File.Exists(legacyPath) ? await File.ReadAllBytesAsync(legacyPath, cancellationToken) : null;
            var key = await keys.LoadOrCreateAsync(legacy, legacyPath, cancellationToken);
            return _tokens = new RegistryTokens(key, service, lifetime);
        }
        finally
        {
            _gate.Release();
        }
    }
}
