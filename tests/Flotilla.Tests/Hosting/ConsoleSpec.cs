using Flotilla.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Flotilla.Tests.Hosting;

/// <summary>
/// What a user sees when starting <c>flotilla up</c>: the ready banner and nothing from Akka's start-up chatter, no
/// spurious singleton warning, no stack traces; <c>--log-level debug</c> (or FLOTILLA_LOG_LEVEL) brings them back.
/// Regression for issue 15 item 6: ~30 Akka INFO lines around the banner and "ClusterSingletonProxy failed to find
/// an associated singleton named [scheduler] … after 30 seconds" within the first second.
/// </summary>
public class ConsoleSpec(ITestOutputHelper output)
{
    /// <summary>How long after the banner the console is watched: past the singletons' and the node agent's start.</summary>
    private static readonly TimeSpan AfterBanner = TimeSpan.FromSeconds(5);

    private static bool IsAkkaInfo(string line) => line.StartsWith("[INFO]", StringComparison.Ordinal) || line.StartsWith("info: akka:", StringComparison.Ordinal);

    private static bool IsSingletonWarning(string line) => line.Contains("ClusterSingletonProxy failed to find", StringComparison.Ordinal);

    private static bool IsStackTrace(string line) => System.Text.RegularExpressions.Regex.IsMatch(line, @"^\s+at \S+\(") || line.Contains("--- End of", StringComparison.Ordinal);

    [Fact]
    public async Task Up_shows_the_banner_and_only_warnings_that_mean_something()
    {
        await using var up = UpProcess.Start("console");
        var ready = await up.WaitReadyAsync(TimeSpan.FromMinutes(2));
        await Task.Delay(AfterBanner);
        var console = up.Lines.Where(l => l.At <= ready + AfterBanner).Select(l => l.Line).ToList();
        output.WriteLine(up.Console());

        Assert.Contains(console, l => l.StartsWith("Flotilla ", StringComparison.Ordinal) && l.Contains(" is ready on node ", StringComparison.Ordinal));
        Assert.DoesNotContain(console, IsAkkaInfo);
        Assert.DoesNotContain(console, IsSingletonWarning);
        Assert.DoesNotContain(console, IsStackTrace);
        // Anything else printed is a one-line warning or error.
        var banner = console.TakeWhile(l => !l.StartsWith("export DOCKER_HOST", StringComparison.Ordinal)).Count() + 1;
        var rest = console.Skip(banner).Where(l => !l.StartsWith("warn: ", StringComparison.Ordinal) && !l.StartsWith("fail: ", StringComparison.Ordinal)).ToList();
        Assert.True(rest.Count == 0, "not a warning or error:\n" + string.Join("\n", rest));
    }

    [Fact]
    public async Task Log_level_debug_shows_Akka_and_the_details()
    {
        await using var up = UpProcess.Start("console-debug", env: new Dictionary<string, string> { ["FLOTILLA_LOG_LEVEL"] = "debug" });
        var ready = await up.WaitReadyAsync(TimeSpan.FromMinutes(2));
        await Task.Delay(AfterBanner);
        var console = up.Lines.Where(l => l.At <= ready + AfterBanner).Select(l => l.Line).ToList();
        output.WriteLine(string.Join("\n", console.Take(200)));

        Assert.Contains(console, IsAkkaInfo);
        Assert.Contains(console, l => l.StartsWith("dbug: akka:", StringComparison.Ordinal));
        Assert.Contains(console, IsSingletonWarning);
        Assert.Contains(console, l => l.Contains("Node console-debug ", StringComparison.Ordinal) && l.Contains(" registered at ", StringComparison.Ordinal));
    }

    [Fact]
    public async Task An_unknown_log_level_is_a_usage_error_that_names_the_levels()
    {
        var result = await ProcessRunner.RunAsync("dotnet", [Path.Combine(AppContext.BaseDirectory, "flotilla.dll"), "up", "--data", "/nonexistent/flotilla-loglevel",
            "--log-level", "loud"], TimeSpan.FromSeconds(30));
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--log-level must be trace, debug, information, warning or error, not 'loud'", result.Stderr);
    }
}
