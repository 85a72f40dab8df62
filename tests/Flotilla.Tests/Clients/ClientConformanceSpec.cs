using System.Text;
using Docker.DotNet;
using Docker.DotNet.Models;
using Flotilla.Tests.Gateway;
using Flotilla.Tests.Support;
using Xunit;

namespace Flotilla.Tests.Clients;

/// <summary>
/// The client conformance suite (tests/clients/README.md): every scenario file under tests/clients — docker-py,
/// dockerode, docker-compose — runs as its own case against the all-in-one host; Docker.DotNet's scenario is below.
/// </summary>
public class ClientConformanceSpec(RunningFlotilla flotilla) : IClassFixture<RunningFlotilla>, IAsyncLifetime
{
    public const string Image = "clientbox:1";

    /// <summary>tests/clients of this checkout.</summary>
    public static string ClientsDirectory
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "Cluster.sln"))) return Path.Combine(dir.FullName, "tests", "clients");
            throw new DirectoryNotFoundException("no Cluster.sln above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>Every scenario file, relative to tests/clients.</summary>
    public static TheoryData<string> Scenarios()
    {
        var root = ClientsDirectory;
        var data = new TheoryData<string>();
        IEnumerable<string> Files(string dir, string pattern, SearchOption option = SearchOption.TopDirectoryOnly) =>
            Directory.Exists(Path.Combine(root, dir))
                ? Directory.EnumerateFiles(Path.Combine(root, dir), pattern, option).Where(f => !f.Contains("node_modules", StringComparison.Ordinal))
                : [];
        foreach (var file in Files("docker-py", "*.py").Concat(Files("dockerode", "*.js")).Concat(Files("compose", "run.sh", SearchOption.AllDirectories)).Order(StringComparer.Ordinal))
            data.Add(Path.GetRelativePath(root, file));
        return data;
    }

    public async Task InitializeAsync()
    {
        if ((await flotilla.RunDockerAsync("image", "inspect", Image)).ExitCode == 0) return;
        Directory.CreateDirectory(flotilla.DataRoot);
        var path = Path.Combine(flotilla.DataRoot, "clientbox-rootfs.tar");
        await File.WriteAllBytesAsync(path, BusyboxImage.Rootfs());
        var imported = await flotilla.RunDockerAsync("import", "-c", "CMD [\"/bin/sh\"]", path, Image);
        Assert.True(imported.ExitCode == 0, imported.ToString());
    }

    public Task DisposeAsync() => Task.CompletedTask;

    private Dictionary<string, string> Environment => new()
    {
        ["DOCKER_HOST"] = $"tcp://127.0.0.1:{flotilla.DockerPort}",
        ["FLOTILLA_SOCKET"] = flotilla.DockerSocket,
        ["FLOTILLA_IMAGE"] = Image,
        ["DOCKER_CONFIG"] = Path.Combine(flotilla.DataRoot, "docker-config"),
    };

    [Theory]
    [MemberData(nameof(Scenarios))]
    public async Task Scenario_passes(string scenario)
    {
        var path = Path.Combine(ClientsDirectory, scenario);
        var (file, args) = scenario.Split('/')[0] switch
        {
            // Debian's interpreter: the PATH may hold another python with another docker-py.
            "docker-py" => ("/usr/bin/python3", new[] { path }),
            "dockerode" => ("node", new[] { path }),
            "compose" => ("/bin/sh", new[] { "-c", $"cd '{Path.GetDirectoryName(path)}' && ./run.sh" }),
            var other => throw new InvalidOperationException($"no runner for {other}"),
        };
        var result = await ProcessRunner.RunAsync(file, args, TimeSpan.FromMinutes(3), Environment);
        Assert.True(result.ExitCode == 0, $"{scenario}: {result}");
    }

    /// <summary>Docker.DotNet: lifecycle, logs, exec, archive, events with until, volumes.</summary>
    [Fact]
    public async Task Docker_dotnet_scenario_passes()
    {
        using var client = new DockerClientConfiguration(new Uri($"tcp://127.0.0.1:{flotilla.DockerPort}")).CreateClient();
        var since = DateTimeOffset.UtcNow.AddSeconds(-1);
        var created = await client.Containers.CreateContainerAsync(new CreateContainerParameters
        {
            Image = Image,
            Name = "dotnet-basics",
            Cmd = ["sh", "-c", "echo started; sleep 600"],
        });
        Assert.True(await client.Containers.StartContainerAsync(created.ID, new ContainerStartParameters()));
        Assert.True((await client.Containers.InspectContainerAsync(created.ID)).State.Running);

        Assert.True(await Eventually.TrueAsync(async () =>
        {
            using var logs = await client.Containers.GetContainerLogsAsync(created.ID, false, new ContainerLogsParameters { ShowStdout = true });
            return (await logs.ReadOutputToEndAsync(CancellationToken.None)).stdout == "started\n";
        }, TimeSpan.FromSeconds(10)));

        var exec = await client.Exec.ExecCreateContainerAsync(created.ID, new ContainerExecCreateParameters
        {
            Cmd = ["sh", "-c", "echo out; echo err >&2; exit 3"],
            AttachStdout = true,
            AttachStderr = true,
        });
        using (var stream = await client.Exec.StartAndAttachContainerExecAsync(exec.ID, false))
        {
            var (stdout, stderr) = await stream.ReadOutputToEndAsync(CancellationToken.None);
            Assert.Equal(("out\n", "err\n"), (stdout, stderr));
        }
        Assert.Equal(3, (await client.Exec.InspectContainerExecAsync(exec.ID)).ExitCode);

        // Archive both ways.
        using (var tar = new MemoryStream())
        {
            await using (var writer = new System.Formats.Tar.TarWriter(tar, leaveOpen: true))
            {
                var entry = new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.RegularFile, "copied.txt")
                {
                    DataStream = new MemoryStream("through the archive\n"u8.ToArray()),
                };
                await writer.WriteEntryAsync(entry);
            }
            tar.Position = 0;
            await client.Containers.ExtractArchiveToContainerAsync(created.ID, new ContainerPathStatParameters { Path = "/tmp" }, tar);
        }
        var archive = await client.Containers.GetArchiveFromContainerAsync(created.ID, new GetArchiveFromContainerParameters { Path = "/tmp/copied.txt" }, false);
        using var fetched = new MemoryStream();
        await archive.Stream.CopyToAsync(fetched);
        fetched.Position = 0;
        using (var reader = new System.Formats.Tar.TarReader(fetched))
        {
            var entry = await reader.GetNextEntryAsync();
            Assert.True(entry is not null, $"empty archive of {fetched.Length} bytes");
            Assert.Equal("copied.txt", entry.Name);
            Assert.True(entry.DataStream is not null, $"{entry.EntryType} of {entry.Length} bytes in an archive of {fetched.Length} bytes");
            Assert.Equal("through the archive\n", await new StreamReader(entry.DataStream).ReadToEndAsync());
        }

        // Volumes.
        var volume = await client.Volumes.CreateAsync(new VolumesCreateParameters { Name = "dotnetvol" });
        Assert.Equal("dotnetvol", volume.Name);
        await client.Volumes.RemoveAsync("dotnetvol");

        await client.Containers.RemoveContainerAsync(created.ID, new ContainerRemoveParameters { Force = true });

        // Events with until: the stream ends by itself.
        var until = DateTimeOffset.UtcNow.AddSeconds(1);
        await Task.Delay(until - DateTimeOffset.UtcNow + TimeSpan.FromMilliseconds(200));
        var events = new List<Message>();
        await client.System.MonitorEventsAsync(new ContainerEventsParameters
        {
            Since = since.ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture),
            Until = until.ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture),
        }, new Progress<Message>(events.Add)).WaitAsync(TimeSpan.FromSeconds(20));
        await Task.Delay(200); // Progress<T> reports through the thread pool.
        var actions = events.Where(e => e.Actor?.Attributes is { } attributes && attributes.TryGetValue("name", out var n) && n == "dotnet-basics").Select(e => e.Action).ToList();
        Assert.Contains("start", actions);
        Assert.Contains("destroy", actions);
    }
}
