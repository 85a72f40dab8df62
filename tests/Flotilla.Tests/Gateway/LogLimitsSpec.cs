using Flotilla.NodeRuntime.Containers;
using Flotilla.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Flotilla.Tests.Gateway;

/// <summary>Issue 13, item 12: a container's log is capped (<c>--log-opt max-size</c>, a default cap otherwise) and log options Flotilla does not implement are refused by name.</summary>
public class LogLimitsSpec(RunningFlotilla flotilla) : IClassFixture<RunningFlotilla>
{
    private const string Image = "logbox:1";

    private async Task<string> DockerOk(params string[] args)
    {
        var result = await flotilla.RunDockerAsync(args);
        Assert.True(result.ExitCode == 0, $"docker {string.Join(' ', args)}: {result}");
        return result.Stdout;
    }

    private async Task ImportImageAsync()
    {
        if ((await flotilla.RunDockerAsync("image", "inspect", Image)).ExitCode == 0) return;
        Directory.CreateDirectory(flotilla.DataRoot);
        var path = Path.Combine(flotilla.DataRoot, "logbox-rootfs.tar");
        await File.WriteAllBytesAsync(path, BusyboxImage.Rootfs());
        await DockerOk("import", "-c", "CMD [\"/bin/sh\"]", path, Image);
    }

    [Fact]
    public async Task A_container_writing_more_than_max_size_keeps_at_most_max_size_on_disk_and_logs_shows_the_newest_lines()
    {
        await ImportImageAsync();
        // ~1.2 MB of output against a 100 KiB cap.
        var id = (await DockerOk("run", "-d", "--log-opt", "max-size=100k", "--log-opt", "max-file=1", Image, "sh", "-c",
            "i=0; while [ $i -lt 12000 ]; do echo \"line-$i-................................................................................\"; i=$((i+1)); done")).Trim();
        await DockerOk("wait", id);
        var runtime = flotilla.Services.GetRequiredService<NodeContainerRuntime>();
        var onDisk = runtime.LogFiles(id).Sum(f => new FileInfo(f).Length);
        Assert.True(onDisk <= 100 * 1024, $"{onDisk} bytes of logs on disk for a 100 KiB cap");
        Assert.True(onDisk > 0);
        Assert.StartsWith("line-11999-", await DockerOk("logs", "--tail", "1", id));
        var inspect = await DockerOk("inspect", "-f", "{{json .HostConfig.LogConfig}}", id);
        Assert.Contains("\"max-size\":\"102400\"", inspect);
        await DockerOk("rm", id);
    }

    [Theory]
    [InlineData("--log-opt", "foo=bar", "unknown log opt 'foo'")]
    [InlineData("--log-opt", "max-file=3", "max-file=3 is not supported")]
    [InlineData("--log-opt", "max-size=lots", "invalid value for max-size: lots")]
    [InlineData("--log-driver", "syslog", "log driver syslog is not supported")]
    public async Task Log_options_that_flotilla_does_not_implement_are_refused_by_name(string flag, string value, string message)
    {
        await ImportImageAsync();
        var result = await flotilla.RunDockerAsync("create", flag, value, Image, "true");
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains(message, result.Stderr);
    }
}
