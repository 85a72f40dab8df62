using System.Collections.Concurrent;
using Xunit;

namespace Flotilla.Tests.Registry.Conformance;

/// <summary>
/// A registry the conformance checks run against: where it answers, what it is called in test names, and which
/// checks are known to fail on it (a check in <see cref="KnownGaps"/> must fail there, so a fixed gap is noticed).
/// </summary>
public abstract class RegistryUnderTest : IAsyncLifetime
{
    /// <summary>One id per test run, so repositories never collide with an earlier run against the same storage.</summary>
    private readonly string _runId = Guid.NewGuid().ToString("N")[..8];
    private readonly ConcurrentDictionary<string, Lazy<Task<object>>> _scenarios = new();
    private int _repositories;
    private RegistryWire? _wire;

    public abstract string Name { get; }

    /// <summary>Check id (test method name, or <c>Method(variant)</c> for theory cases) → why it fails here.</summary>
    public abstract IReadOnlyDictionary<string, string> KnownGaps { get; }

    public Uri BaseUri { get; protected set; } = new("http://127.0.0.1:1/");

    /// <summary>Set when the registry never answered <c>GET /v2/</c>; every check then fails at once with it.</summary>
    public string? Unavailable { get; protected set; }

    public RegistryWire Wire => _wire ??= new RegistryWire(BaseUri);

    /// <summary>A repository name no other check (or run) uses: <c>conformance/&lt;run&gt;/&lt;purpose&gt;-&lt;n&gt;</c>.</summary>
    public string NewRepository(string purpose) =>
        $"conformance/{_runId}/{purpose}-{Interlocked.Increment(ref _repositories)}";

    /// <summary>Shared setup that several checks read (e.g. the referrers graph), built once per registry.</summary>
    public async Task<T> OnceAsync<T>(string key, Func<Task<T>> setup) where T : class =>
        (T)await _scenarios.GetOrAdd(key, _ => new Lazy<Task<object>>(async () => await setup())).Value;

    public abstract Task InitializeAsync();

    public virtual Task DisposeAsync()
    {
        _wire?.Dispose();
        return Task.CompletedTask;
    }

    /// <summary>Polls <c>GET /v2/</c> until it answers 200 or 401; false when the deadline passes.</summary>
    protected async Task<bool> WaitUntilAnsweringAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                var response = await Wire.SendAsync(HttpMethod.Get, "/v2/", timeout: TimeSpan.FromSeconds(2));
                if (response.Status is 200 or 401) return true;
            }
            catch (RegistryUnreachableException)
            {
            }
            await Task.Delay(100);
        }
        return false;
    }
}
