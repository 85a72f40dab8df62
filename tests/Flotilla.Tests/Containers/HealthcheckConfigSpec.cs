using Flotilla.Contracts.Containers;
using Flotilla.Gateway.DockerApi;
using Flotilla.NodeRuntime.Containers;
using Xunit;

namespace Flotilla.Tests.Containers;

/// <summary>The healthcheck's configuration as dockerd reads it: defaults, probe arguments, the image merge, Go's duration text.</summary>
public class HealthcheckConfigSpec
{
    [Fact]
    public void Zero_fields_take_dockerds_defaults()
    {
        var check = new HealthcheckConfig(["CMD-SHELL", "true"], 0, 0, 0, 0, 0);
        Assert.Equal(TimeSpan.FromSeconds(30), check.EffectiveInterval());
        Assert.Equal(TimeSpan.FromSeconds(30), check.EffectiveTimeout());
        Assert.Equal(TimeSpan.Zero, check.EffectiveStartPeriod());
        Assert.Equal(TimeSpan.FromSeconds(5), check.EffectiveStartInterval());
        Assert.Equal(3, check.EffectiveRetries());
        Assert.Equal(TimeSpan.FromMilliseconds(1500), (check with { Interval = 1_500_000_000 }).EffectiveInterval());
    }

    [Fact]
    public void CMD_runs_its_arguments_CMD_SHELL_the_shell_and_NONE_nothing()
    {
        Assert.Equal(["test", "-f", "/ok"], new HealthcheckConfig(["CMD", "test", "-f", "/ok"], 0, 0, 0, 0, 0).ProbeArgs([]));
        Assert.Equal(["/bin/sh", "-c", "test -f /ok"], new HealthcheckConfig(["CMD-SHELL", "test -f /ok"], 0, 0, 0, 0, 0).ProbeArgs([]));
        Assert.Equal(["/bin/ash", "-ec", "x"], new HealthcheckConfig(["CMD-SHELL", "x"], 0, 0, 0, 0, 0).ProbeArgs(["/bin/ash", "-ec"]));
        Assert.False(new HealthcheckConfig(["NONE"], 0, 0, 0, 0, 0).Probes());
        Assert.False(new HealthcheckConfig([], 1, 0, 0, 0, 0).Probes());
    }

    [Fact]
    public void The_requests_non_zero_fields_win_over_the_images()
    {
        var image = new HealthcheckConfig(["CMD", "true"], 500, 600, 700, 800, 4);
        Assert.Equal(image, ContainerCreateRequest.MergeHealthcheck(null, image));
        var merged = ContainerCreateRequest.MergeHealthcheck(new HealthcheckConfig([], 0, 9, 0, 0, 7), image)!;
        Assert.Equal(["CMD", "true"], merged.Test);
        Assert.Equal((500L, 9L, 700L, 800L, 7), (merged.Interval, merged.Timeout, merged.StartPeriod, merged.StartInterval, merged.Retries));
        Assert.Equal(["NONE"], ContainerCreateRequest.MergeHealthcheck(new HealthcheckConfig(["NONE"], 0, 0, 0, 0, 0), image)!.Test);
    }

    [Theory]
    [InlineData(500, "500ms")]
    [InlineData(1000, "1s")]
    [InlineData(1500, "1.5s")]
    [InlineData(30_000, "30s")]
    [InlineData(90_000, "1m30s")]
    [InlineData(3_600_000, "1h0m0s")]
    public void Timeouts_read_as_Go_prints_them(int milliseconds, string text) =>
        Assert.Equal(text, GoDuration.Format(TimeSpan.FromMilliseconds(milliseconds)));
}
