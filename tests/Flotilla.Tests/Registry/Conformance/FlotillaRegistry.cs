using Flotilla.Tests.Gateway;

namespace Flotilla.Tests.Registry.Conformance;

/// <summary>Flotilla's own registry, served by the all-in-one host (<see cref="RunningFlotilla"/>) on its registry port.</summary>
public sealed class FlotillaRegistry : RegistryUnderTest
{
    private readonly RunningFlotilla _flotilla = new();

    public override string Name => "flotilla";

    /// <summary>None: every check must pass on Flotilla.</summary>
    public override IReadOnlyDictionary<string, string> KnownGaps { get; } = new Dictionary<string, string>();

    public override async Task InitializeAsync()
    {
        await _flotilla.InitializeAsync();
        BaseUri = new Uri($"http://127.0.0.1:{_flotilla.RegistryPort}/");
        // The host is up, so the registry listener is too if it exists: a short wait, then every check fails fast.
        if (!await WaitUntilAnsweringAsync(TimeSpan.FromSeconds(5)))
            Unavailable = $"the registry does not answer GET /v2/ on 127.0.0.1:{_flotilla.RegistryPort}";
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        await _flotilla.DisposeAsync();
    }
}
