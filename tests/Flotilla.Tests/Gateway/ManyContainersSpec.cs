using Flotilla.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Flotilla.Tests.Gateway;

/// <summary>
/// Issue 15 item 10 through the real CLI: more running containers on one host than <c>fs.inotify.max_user_instances</c>
/// (128 per user on the whole machine) allowed exit watchers; past ~126 every new one was recorded as exited while it ran.
/// </summary>
public class ManyContainersSpec(RunningFlotilla flotilla, ITestOutputHelper output) : IClassFixture<RunningFlotilla>
{
    private const string Image = "testbox:1";
    private const int Containers = 150;
    private const int Parallel = 6;

    [Fact]
    public async Task One_hundred_fifty_running_containers_are_all_running_in_docker_ps()
    {
        Directory.CreateDirectory(flotilla.DataRoot);
        var path = Path.Combine(flotilla.DataRoot, "busybox-rootfs.tar");
        await File.WriteAllBytesAsync(path, BusyboxImage.Rootfs());
        Assert.Equal(0, (await flotilla.RunDockerAsync("import", path, Image)).ExitCode);
        try
        {
            var next = 0;
            var failures = new List<string>();
            await Task.WhenAll(Enumerable.Range(0, Parallel).Select(async _ =>
            {
                while (Interlocked.Increment(ref next) is var i && i <= Containers)
                {
                    var run = await flotilla.RunDockerAsync("run", "-d", "--network", "none", "--name", $"many-{i}", Image, "sleep", "100000");
                    if (run.ExitCode != 0) lock (failures) failures.Add(run.ToString());
                }
            }));
            Assert.Empty(failures);
            await Task.Delay(TimeSpan.FromSeconds(3)); // the false exits came 7 ms after their start
            var ps = await flotilla.RunDockerAsync("ps", "-a", "--filter", "name=many-", "--format", "{{.State}}");
            var states = ps.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            output.WriteLine(string.Join(", ", states.GroupBy(s => s).Select(g => $"{g.Count()} {g.Key}")));
            Assert.Equal(Containers, states.Length);
            Assert.All(states, s => Assert.Equal("running", s));
        }
        finally
        {
            var ids = (await flotilla.RunDockerAsync("ps", "-aq", "--filter", "name=many-")).Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            foreach (var chunk in ids.Chunk(25)) await flotilla.RunDockerAsync(["rm", "-f", .. chunk]);
        }
    }
}
