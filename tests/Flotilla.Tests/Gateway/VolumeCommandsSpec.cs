using System.Text.Json;
using Flotilla.Tests.Support;
using Xunit;

namespace Flotilla.Tests.Gateway;

/// <summary>Local volumes through the real docker CLI against the all-in-one host: a volume is recorded with its node.</summary>
public class VolumeCommandsSpec(RunningFlotilla flotilla) : IClassFixture<RunningFlotilla>, IAsyncLifetime
{
    private const string Image = "volbox:1";

    public async Task InitializeAsync()
    {
        if ((await flotilla.RunDockerAsync("image", "inspect", Image)).ExitCode == 0) return;
        Directory.CreateDirectory(flotilla.DataRoot);
        var path = Path.Combine(flotilla.DataRoot, "busybox-rootfs.tar");
        await File.WriteAllBytesAsync(path, BusyboxImage.Rootfs());
        await DockerOk("import", "-c", "CMD [\"/bin/sh\"]", path, Image);
    }

    public Task DisposeAsync() => Task.CompletedTask;

    private async Task<string> DockerOk(params string[] args)
    {
        var result = await flotilla.RunDockerAsync(args);
        Assert.True(result.ExitCode == 0, $"docker {string.Join(' ', args)}: {result}");
        return result.Stdout;
    }

    private async Task<JsonElement> InspectVolume(string name) => JsonDocument.Parse(await DockerOk("volume", "inspect", name)).RootElement[0];

    [Fact]
    public async Task A_named_volume_shows_its_node_keeps_data_between_containers_and_goes_with_rm()
    {
        await DockerOk("volume", "create", "--label", "team=a", "keep");
        var volume = await InspectVolume("keep");
        var node = volume.GetProperty("Status").GetProperty("Node").GetString();
        Assert.False(string.IsNullOrEmpty(node));
        Assert.Equal("ready", volume.GetProperty("Status").GetProperty("NodeStatus").GetString());
        Assert.StartsWith("scheduler: ", volume.GetProperty("Status").GetProperty("Placement").GetString());
        Assert.Equal("a", volume.GetProperty("Labels").GetProperty("team").GetString());
        var mountpoint = Path.Combine(flotilla.DataRoot, "volumes", "keep", "_data");
        Assert.Equal(mountpoint, volume.GetProperty("Mountpoint").GetString());
        Assert.True(Directory.Exists(mountpoint), "made at once on this node");

        await DockerOk("run", "--rm", "-v", "keep:/d", Image, "sh", "-c", "echo kept > /d/f");
        Assert.Equal("kept", (await DockerOk("run", "--rm", "-v", "keep:/d", Image, "cat", "/d/f")).Trim());
        Assert.Contains("keep", await DockerOk("volume", "ls", "--format", "{{.Name}}"));

        var user = (await DockerOk("create", "-v", "keep:/d", Image)).Trim();
        var inUse = await flotilla.RunDockerAsync("volume", "rm", "keep");
        Assert.Contains("volume is in use", inUse.Stderr);
        // The container's mount names the volume's directory on its node.
        var inspected = JsonDocument.Parse(await DockerOk("inspect", user)).RootElement[0];
        Assert.Equal(mountpoint, inspected.GetProperty("Mounts")[0].GetProperty("Source").GetString());
        Assert.Equal(node, inspected.GetProperty("Node").GetProperty("Name").GetString());
        await DockerOk("rm", user);
        await DockerOk("volume", "rm", "keep");
        Assert.DoesNotContain("keep", await DockerOk("volume", "ls", "--format", "{{.Name}}"));
        Assert.False(Directory.Exists(Path.GetDirectoryName(mountpoint)), "its data is gone");
    }

    [Fact]
    public async Task A_volume_a_container_names_is_recorded_on_the_node_it_runs_on_and_an_anonymous_one_goes_with_rm_v()
    {
        var id = (await DockerOk("create", "-v", "implicit:/d", "-v", "/anon", Image)).Trim();
        var status = (await InspectVolume("implicit")).GetProperty("Status");
        Assert.Equal($"made for container {id[..12]}, placed on {status.GetProperty("Node").GetString()}", status.GetProperty("Placement").GetString());
        var anonymous = JsonDocument.Parse(await DockerOk("inspect", id)).RootElement[0].GetProperty("Mounts").EnumerateArray()
            .Single(m => m.GetProperty("Destination").GetString() == "/anon").GetProperty("Name").GetString()!;
        Assert.Contains(anonymous, await DockerOk("volume", "ls", "--format", "{{.Name}}"));
        await DockerOk("rm", "-v", id);
        var listed = await DockerOk("volume", "ls", "--format", "{{.Name}}");
        Assert.DoesNotContain(anonymous, listed);
        Assert.False(Directory.Exists(Path.Combine(flotilla.DataRoot, "volumes", anonymous)));
        Assert.Contains("implicit", listed); // a named one stays, as in Docker
        await DockerOk("volume", "rm", "implicit");
    }

    [Fact]
    public async Task Options_the_local_driver_does_not_take_are_refused_by_name_and_a_node_that_does_not_exist_too()
    {
        var type = await flotilla.RunDockerAsync("volume", "create", "--opt", "type=tmpfs", "refused1");
        Assert.NotEqual(0, type.ExitCode);
        Assert.Contains("volume option \"type\" is not supported", type.Stderr);
        var node = await flotilla.RunDockerAsync("volume", "create", "--opt", "node=nowhere", "refused2");
        Assert.NotEqual(0, node.ExitCode);
        Assert.Contains("no node for the volume", node.Stderr);
        var listed = await DockerOk("volume", "ls", "--format", "{{.Name}}");
        Assert.DoesNotContain("refused", listed);
    }

    [Fact]
    public async Task A_missing_bind_source_directory_is_made_when_the_container_starts_not_at_create()
    {
        var source = Path.Combine(flotilla.DataRoot, "binds-" + Guid.NewGuid().ToString("N")[..8], "sub");
        var id = (await DockerOk("create", "-v", $"{source}:/b", Image, "sh", "-c", "echo in > /b/f")).Trim();
        Assert.False(Directory.Exists(source), "not made by the create");
        await DockerOk("start", "-a", id);
        Assert.Equal("in", (await File.ReadAllTextAsync(Path.Combine(source, "f"))).Trim());
        await DockerOk("rm", id);
    }
}
