using System.Diagnostics;
using System.Text.Json;
using Flotilla.Cluster.Containers;
using Flotilla.Contracts.Containers;
using Flotilla.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Flotilla.Tests.Gateway;

/// <summary>
/// The all-in-one host with a small runtime allowance (5 s instead of 60 s), so that a stop grace period longer than
/// the old fixed timeouts (gateway 2 x allowance, entity grace + allowance) fits in a test: the same arithmetic as
/// `docker stop -t 90` against the defaults, scaled down.
/// </summary>
public sealed class ShortTimeoutsFlotilla : RunningFlotilla
{
    public static readonly CommandTimeouts Timeouts = new() { RuntimeWork = TimeSpan.FromSeconds(5) };

    protected override void ConfigureServices(IServiceCollection services) => services.AddSingleton(Timeouts);
}

/// <summary>Issue 15 item 4: each hop's timeout follows from what the request asks for.</summary>
public class CommandTimeoutsSpec(ShortTimeoutsFlotilla flotilla) : IClassFixture<ShortTimeoutsFlotilla>, IAsyncLifetime
{
    private const string Image = "testbox:1";

    public async Task InitializeAsync()
    {
        if ((await flotilla.RunDockerAsync("image", "inspect", Image)).ExitCode == 0) return;
        Directory.CreateDirectory(flotilla.DataRoot);
        var path = Path.Combine(flotilla.DataRoot, "busybox-rootfs.tar");
        await File.WriteAllBytesAsync(path, BusyboxImage.Rootfs());
        var imported = await flotilla.RunDockerAsync("import", "-c", "CMD [\"/bin/sh\"]", path, Image);
        Assert.True(imported.ExitCode == 0, imported.ToString());
    }

    public Task DisposeAsync() => Task.CompletedTask;

    [Fact]
    public async Task A_stop_whose_grace_period_outlasts_the_fixed_timeouts_completes()
    {
        // PID 1 without a TERM handler ignores TERM: the stop waits the whole grace period, then KILLs.
        var run = await flotilla.RunDockerAsync("run", "-d", "--name", "stubborn", Image, "sleep", "300");
        Assert.True(run.ExitCode == 0, run.ToString());
        var grace = 2 * (int)ShortTimeoutsFlotilla.Timeouts.RuntimeWork.TotalSeconds + 2; // past the old gateway timeout (2 x allowance)
        var sw = Stopwatch.StartNew();
        var stop = await flotilla.RunDockerAsync("stop", "-t", grace.ToString(), "stubborn");
        Assert.True(stop.ExitCode == 0, $"docker stop -t {grace} after {sw.Elapsed}: {stop}");
        Assert.True(sw.Elapsed >= TimeSpan.FromSeconds(grace), $"stop took {sw.Elapsed}");
        var state = JsonDocument.Parse((await flotilla.RunDockerAsync("inspect", "stubborn")).Stdout).RootElement[0].GetProperty("State");
        Assert.Equal("exited", state.GetProperty("Status").GetString());
        Assert.Equal(137, state.GetProperty("ExitCode").GetInt32());
        Assert.Equal(0, (await flotilla.RunDockerAsync("rm", "stubborn")).ExitCode);
    }
}

/// <summary>The arithmetic of <see cref="CommandTimeouts"/> and how a timeout reaches a Docker client.</summary>
public class CommandTimeoutArithmeticSpec
{
    private static readonly string Id = new('c', 64);
    private static readonly Flotilla.Contracts.RequestOrigin Origin = Flotilla.Contracts.RequestOrigin.System();
    private static readonly CommandTimeouts Defaults = CommandTimeouts.Default;

    private static TimeSpan S(double seconds) => TimeSpan.FromSeconds(seconds);

    [Fact]
    public void A_stop_waits_its_grace_period_plus_the_runtime_work_plus_a_margin_per_hop()
    {
        // docker stop -t 90: the runtime stops within 90 s + its work; the entity waits that; the caller a margin more.
        Assert.Equal(S(90 + 60), Defaults.RuntimeStop(90));
        Assert.Equal(S(90 + 60 + 30), Defaults.Entity(new StopContainer(Id, 90, null, Origin)));
        Assert.True(Defaults.Entity(new StopContainer(Id, 90, null, Origin)) > S(120), "longer than the old fixed 120 s");
        // Without -t: the container's --stop-timeout, else Docker's 10 s.
        Assert.Equal(S(300 + 60 + 30), Defaults.Entity(new StopContainer(Id, null, null, Origin), containerStopSeconds: 300));
        Assert.Equal(S(10 + 60 + 30), Defaults.Entity(new StopContainer(Id, null, null, Origin)));
        // -t given wins over the container's; a negative grace is none (KILL at once, as the runtime does).
        Assert.Equal(S(5 + 60 + 30), Defaults.Entity(new StopContainer(Id, 5, null, Origin), containerStopSeconds: 300));
        Assert.Equal(S(0 + 60 + 30), Defaults.Entity(new StopContainer(Id, -1, null, Origin)));
        Assert.True(CommandTimeouts.NeedsContainerStopTimeout(new StopContainer(Id, null, null, Origin)));
        Assert.False(CommandTimeouts.NeedsContainerStopTimeout(new StopContainer(Id, 3, null, Origin)));
    }

    [Fact]
    public void Restart_kill_and_forced_removal_add_up_the_runtime_requests_they_make()
    {
        // Restart: unpause (if paused) + stop + start.
        Assert.Equal(S(60 + (90 + 60) + 60 + 30), Defaults.Entity(new RestartContainer(Id, 90, Origin)));
        Assert.True(CommandTimeouts.NeedsContainerStopTimeout(new RestartContainer(Id, null, Origin)));
        // Forced removal: KILL (no grace) + removal of the files.
        Assert.Equal(S((0 + 60) + 60 + 30), Defaults.Entity(new RemoveContainer(Id, true, Origin)));
        Assert.Equal(S(60 + 30), Defaults.Entity(new RemoveContainer(Id, false, Origin)));
        Assert.Equal(S(60 + 30), Defaults.Entity(new KillContainer(Id, Signal.Kill, Origin)));
        // Scaled down (as the all-in-one test host runs): the same sums.
        var small = new CommandTimeouts { RuntimeWork = S(5), HopMargin = S(1) };
        Assert.Equal(S(12 + 5 + 1), small.Entity(new StopContainer(Id, 12, null, Origin)));
    }

    [Theory]
    [InlineData("ask")]
    [InlineData("command")]
    public async Task A_timeout_is_answered_in_dockers_error_shape_with_what_ran_out(string kind)
    {
        var context = new Microsoft.AspNetCore.Http.DefaultHttpContext();
        context.Response.Body = new MemoryStream();
        Exception timeout = kind == "ask"
            ? new Akka.Actor.AskTimeoutException("Timeout after 00:02:00 seconds")
            : new CommandTimeoutException($"stop container {Id}: no answer within 180 s; it may still complete (see docker inspect)");
        await Flotilla.Gateway.DockerApi.DockerErrors.Guarded(context, () => throw timeout);
        Assert.Equal(500, context.Response.StatusCode);
        Assert.StartsWith("application/json", context.Response.ContentType);
        context.Response.Body.Position = 0;
        var body = JsonDocument.Parse(context.Response.Body).RootElement;
        Assert.Equal(timeout.Message, body.GetProperty("message").GetString());
    }
}
