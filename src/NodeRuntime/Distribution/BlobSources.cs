using System.Collections.Concurrent;
using Flotilla.NodeRuntime.Storage;

namespace Flotilla.NodeRuntime.Distribution;

/// <summary>
/// Which repositories of which registry are known to hold a blob (because we pushed it there or pulled it from
/// there), so a push to another repository of the same registry can mount it instead of uploading it.
/// In memory: after a restart the first push uploads (or finds the blob with HEAD) again.
/// </summary>
public sealed class BlobSources
{
    private const int MaxRepositoriesPerBlob = 8;
    private readonly ConcurrentDictionary<(string Registry, Digest Digest), ConcurrentDictionary<string, DateTimeOffset>> _sources = new();

    public void Add(string registry, string repository, Digest digest)
    {
        var repositories = _sources.GetOrAdd((registry, digest), _ => new ConcurrentDictionary<string, DateTimeOffset>(StringComparer.Ordinal));
        repositories[repository] = DateTimeOffset.UtcNow;
        if (repositories.Count > MaxRepositoriesPerBlob)
            foreach (var oldest in repositories.OrderBy(kv => kv.Value).Take(repositories.Count - MaxRepositoriesPerBlob).ToList())
                repositories.TryRemove(oldest.Key, out _);
    }

    /// <summary>Repositories of <paramref name="registry"/> other than <paramref name="except"/> that hold the blob, most recent first.</summary>
    public IReadOnlyList<string> Candidates(string registry, Digest digest, string except) =>
        _sources.TryGetValue((registry, digest), out var repositories)
            ? repositories.Where(kv => kv.Key != except).OrderByDescending(kv => kv.Value).Select(kv => kv.Key).ToList()
            : [];
}
