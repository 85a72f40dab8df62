using Xunit;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace Flotilla.Tests.Registry.Conformance;

/// <summary>How a check's outcome depends on the registry's known gaps (no registry needed).</summary>
public class KnownGapSemanticsSpec(ITestOutputHelper output)
{
    private sealed class FakeRegistry : RegistryUnderTest
    {
        public FakeRegistry(string? unavailable = null) => Unavailable = unavailable;

        public override string Name => "fake";

        public override IReadOnlyDictionary<string, string> KnownGaps { get; } = new Dictionary<string, string>
        {
            [nameof(Checks.Gap_that_fails)] = "broken here",
            [nameof(Checks.Gap_that_passes)] = "was broken here",
            [nameof(Checks.Gap_that_cannot_connect)] = "broken here",
            [$"{nameof(Checks.Variant)}(bad)"] = "broken for bad",
        };

        public override Task InitializeAsync() => Task.CompletedTask;
    }

    private sealed class Checks(FakeRegistry registry, ITestOutputHelper output) : ConformanceChecks<FakeRegistry>(registry, output)
    {
        public Task Gap_that_fails() => Check(() => throw new XunitException("the registry is wrong"));
        public Task Gap_that_passes() => Check(() => Task.CompletedTask);
        public Task Gap_that_cannot_connect() => Check(() => throw new RegistryUnreachableException("refused", new HttpRequestException()));
        public Task Ordinary_check_that_fails() => Check(() => throw new XunitException("the registry is wrong"));
        public Task Ordinary_check_that_passes() => Check(() => Task.CompletedTask);
        public Task Variant(string name, bool fails) => Check(() => fails ? throw new XunitException(name) : Task.CompletedTask, variant: name);
    }

    private Checks On(FakeRegistry registry) => new(registry, output);

    [Fact]
    public async Task A_known_gap_must_fail_and_an_ordinary_check_must_pass()
    {
        var checks = On(new FakeRegistry());
        await checks.Gap_that_fails();
        await checks.Ordinary_check_that_passes();
        await Assert.ThrowsAsync<XunitException>(checks.Ordinary_check_that_fails);
    }

    [Fact]
    public async Task A_known_gap_that_passes_now_fails_and_says_so()
    {
        var failure = await Assert.ThrowsAnyAsync<XunitException>(On(new FakeRegistry()).Gap_that_passes);
        Assert.Contains("take it off the list", failure.Message);
    }

    [Fact]
    public async Task An_unreachable_registry_is_never_the_expected_failure_of_a_gap() =>
        await Assert.ThrowsAsync<RegistryUnreachableException>(On(new FakeRegistry()).Gap_that_cannot_connect);

    [Fact]
    public async Task Theory_cases_are_gaps_one_by_one()
    {
        var checks = On(new FakeRegistry());
        await checks.Variant("bad", fails: true);
        await checks.Variant("good", fails: false);
        await Assert.ThrowsAnyAsync<XunitException>(() => checks.Variant("good", fails: true));
    }

    [Fact]
    public async Task An_unavailable_registry_fails_every_check_with_the_reason()
    {
        var checks = On(new FakeRegistry("nothing listens on 127.0.0.1:1"));
        foreach (var check in new Func<Task>[] { checks.Ordinary_check_that_passes, checks.Gap_that_fails })
            Assert.Contains("nothing listens", (await Assert.ThrowsAnyAsync<XunitException>(check)).Message);
    }
}
