using System.Text;
using Docker.DotNet.Models;
using DotNet.Testcontainers.Builders;
using DotNet.Testcontainers.Configurations;
using DotNet.Testcontainers.Images;
using Xunit;

namespace Flotilla.Testcontainers.Tests;

/// <summary>
/// Testcontainers for .NET 4.17, as a user's integration test drives Docker: a container with a bind mount, a tmpfs and
/// a healthcheck, started with the <c>UntilContainerIsHealthy</c> wait strategy; exec, logs, files in and out; disposal
/// removes it. Resource reaper (Ryuk) off: its image would be pulled from Docker Hub.
/// </summary>
public sealed class TestcontainersSpec(FlotillaUp flotilla) : IClassFixture<FlotillaUp>
{
    [Fact]
    public async Task A_container_with_mounts_and_a_healthcheck_starts_healthy_and_serves_exec_logs_and_files()
    {
        TestcontainersSettings.ResourceReaperEnabled = false;
        var hostDir = Path.Combine(flotilla.Root, "bind");
        Directory.CreateDirectory(hostDir);
        await File.WriteAllTextAsync(Path.Combine(hostDir, "f"), "from-host\n");

        var container = new ContainerBuilder()
            .WithDockerEndpoint(flotilla.DockerEndpoint)
            .WithImage(FlotillaUp.Image)
            .WithImagePullPolicy(PullPolicy.Missing)
            .WithCommand("sh", "-c", "echo ready; sleep 1; touch /tmp/ok; sleep 600")
            .WithBindMount(hostDir, "/data", AccessMode.ReadOnly)
            .WithTmpfsMount("/scratch")
            .WithCreateParameterModifier(p => p.Healthcheck = new HealthcheckConfig
            {
                Test = ["CMD-SHELL", "test -f /tmp/ok"],
                Interval = TimeSpan.FromMilliseconds(200),
                Retries = 30,
            })
            .WithWaitStrategy(Wait.ForUnixContainer().UntilContainerIsHealthy())
            .Build();
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await container.StartAsync(timeout.Token);
            Assert.Equal(DotNet.Testcontainers.Containers.TestcontainersHealthStatus.Healthy, container.Health);

            var read = await container.ExecAsync(["cat", "/data/f"]);
            Assert.Equal((0L, "from-host\n"), (read.ExitCode, read.Stdout));
            var write = await container.ExecAsync(["sh", "-c", "echo x > /data/g"]);
            Assert.NotEqual(0L, write.ExitCode);

            var (stdout, _) = await container.GetLogsAsync();
            Assert.Contains("ready", stdout);

            await container.CopyAsync(Encoding.UTF8.GetBytes("in-tmpfs"), "/scratch/x");
            Assert.Equal("in-tmpfs", Encoding.UTF8.GetString(await container.ReadFileAsync("/scratch/x")));
            var mounts = await container.ExecAsync(["cat", "/proc/mounts"]);
            Assert.Contains("tmpfs /scratch tmpfs", mounts.Stdout);
        }
        catch (Exception ex)
        {
            throw new Xunit.Sdk.XunitException($"{ex}\n--- flotilla up ---\n{flotilla.Output()}");
        }
        finally
        {
            await container.DisposeAsync();
        }
    }
}
