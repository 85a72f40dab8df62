using System.Formats.Tar;
using System.Text;
using System.Text.Json;
using Flotilla.Tests.Images;
using Flotilla.Tests.Support;
using Marten;
using Xunit;

namespace Flotilla.Tests.Gateway;

/// <summary>The image commands through the real docker CLI against the all-in-one host.</summary>
public class ImageCommandsSpec(RunningFlotilla flotilla) : IClassFixture<RunningFlotilla>
{
    private string WriteFile(string name, byte[] bytes)
    {
        Directory.CreateDirectory(flotilla.DataRoot);
        var path = Path.Combine(flotilla.DataRoot, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private async Task<string> DockerOk(params string[] args)
    {
        var result = await flotilla.RunDockerAsync(args);
        Assert.True(result.ExitCode == 0, $"docker {string.Join(' ', args)}: {result}");
        return result.Stdout;
    }

    private async Task<string> ImportAsync(string reference, params string[] extra)
    {
        var rootfs = WriteFile($"rootfs-{Guid.NewGuid():N}.tar", ArchiveFixtures.BusyboxRootfs());
        var output = await DockerOk(["import", .. extra, rootfs, reference]);
        var id = output.Trim();
        Assert.Matches("^sha256:[0-9a-f]{64}$", id);
        return id;
    }

    [Fact]
    public async Task Import_from_stdin_lists_inspects_by_short_prefix_and_records_events()
    {
        var rootfs = WriteFile("stdin-rootfs.tar", ArchiveFixtures.BusyboxRootfs());
        var result = await ProcessRunner.RunAsync("bash", ["-c", $"cat {rootfs} | docker -H tcp://127.0.0.1:{flotilla.DockerPort} import -c 'CMD [\"/bin/sh\"]' -c 'ENV A=1' -c 'LABEL tier=db' -m 'from a test' - my/ubuntu:14.04"]);
        Assert.True(result.ExitCode == 0, result.ToString());
        var id = result.Stdout.Trim();

        var images = await DockerOk("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}");
        Assert.Contains($"my/ubuntu:14.04 {id[7..19]}", images);

        var inspect = JsonDocument.Parse(await DockerOk("inspect", id[7..10])).RootElement[0];
        Assert.Equal(id, inspect.GetProperty("Id").GetString());
        Assert.Equal("my/ubuntu:14.04", inspect.GetProperty("RepoTags")[0].GetString());
        Assert.Equal("from a test", inspect.GetProperty("Comment").GetString());
        Assert.Equal("/bin/sh", inspect.GetProperty("Config").GetProperty("Cmd")[0].GetString());
        Assert.Equal("A=1", inspect.GetProperty("Config").GetProperty("Env")[0].GetString());
        Assert.Equal(1, inspect.GetProperty("RootFS").GetProperty("Layers").GetArrayLength());

        var labelled = await DockerOk("images", "-q", "--filter", "label=tier=db");
        Assert.Contains(id[7..19], labelled);

        await using var store = flotilla.OpenStore();
        await using var session = store.QuerySession();
        var events = await session.Events.FetchStreamAsync("image-" + id);
        Assert.Equal(["image_registered", "image_tagged"], events.Select(e => e.EventTypeName));
        Assert.StartsWith("anonymous@", events[0].UserName);
        Assert.Equal(events[0].CorrelationId, events[1].CorrelationId);
    }

    [Fact]
    public async Task Tag_and_rmi_follow_dockers_rules()
    {
        var id = await ImportAsync("rules/a:1");
        await DockerOk("tag", "rules/a:1", "rules/b:2");
        await DockerOk("tag", id[7..19], "rules/c");

        var refused = await flotilla.RunDockerAsync("rmi", id[7..19]);
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains($"conflict: unable to delete {id[7..19]} (must be forced) - image is referenced in multiple repositories", refused.Stderr);

        Assert.Contains("Untagged: rules/b:2", await DockerOk("rmi", "rules/b:2"));
        var forced = await DockerOk("rmi", "-f", id[7..19]);
        Assert.Contains("Untagged: rules/a:1", forced);
        Assert.Contains("Untagged: rules/c:latest", forced);
        Assert.Contains($"Deleted: {id}", forced);

        var missing = await flotilla.RunDockerAsync("image", "inspect", id);
        Assert.NotEqual(0, missing.ExitCode);
        Assert.Contains("No such image", missing.Stderr);
    }

    [Fact]
    public async Task A_tag_moved_to_another_image_leaves_the_first_one_dangling()
    {
        var first = await ImportAsync("moving:1", "-m", "first");
        var second = await ImportAsync("moving:1", "-m", "second");
        Assert.NotEqual(first, second);
        var dangling = await DockerOk("images", "-q", "--no-trunc", "--filter", "dangling=true");
        Assert.Contains(first, dangling);
        Assert.DoesNotContain(second, dangling);
        var pruned = await DockerOk("image", "prune", "-f");
        Assert.Contains(first, pruned);
    }

    [Fact]
    public async Task Save_then_load_by_file_and_by_stdin_gives_the_same_image()
    {
        var id = await ImportAsync("roundtrip:1");
        var archive = Path.Combine(flotilla.DataRoot, "roundtrip.tar");
        await DockerOk("save", "-o", archive, "roundtrip:1");
        await DockerOk("rmi", "roundtrip:1");

        Assert.Contains("Loaded image: roundtrip:1", await DockerOk("load", "--input", archive));
        Assert.Contains(id[7..19], await DockerOk("images", "-q", "roundtrip"));

        await DockerOk("rmi", "roundtrip:1");
        var viaStdin = await ProcessRunner.RunAsync("bash", ["-c", $"docker -H tcp://127.0.0.1:{flotilla.DockerPort} load < {archive}"]);
        Assert.True(viaStdin.ExitCode == 0, viaStdin.ToString());
        Assert.Contains("Loaded image: roundtrip:1", viaStdin.Stdout);
        var inspect = JsonDocument.Parse(await DockerOk("image", "inspect", "roundtrip:1")).RootElement[0];
        Assert.Equal(id, inspect.GetProperty("Id").GetString());
    }

    public static IEnumerable<object[]> HostileRootfs()
    {
        static byte[] Tar(Action<TarWriter> build) => ArchiveFixtures.Tar(build);
        yield return ["dot-dot", Tar(w => w.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "../escape") { DataStream = new MemoryStream("x"u8.ToArray()) })), "escape"];
        yield return ["symlink-escape", Tar(w =>
        {
            w.WriteEntry(new PaxTarEntry(TarEntryType.SymbolicLink, "link") { LinkName = "/" });
            w.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "link/evil") { DataStream = new MemoryStream("x"u8.ToArray()) });
        }), "evil"];
        yield return ["device", Tar(w => w.WriteEntry(new PaxTarEntry(TarEntryType.BlockDevice, "dev/sda") { DeviceMajor = 8, DeviceMinor = 0 })), "sda"];
        yield return ["truncated", ArchiveFixtures.BusyboxRootfs()[..3000], "busybox"];
    }

    [Theory]
    [MemberData(nameof(HostileRootfs))]
    public async Task Hostile_rootfs_is_refused_with_no_image_and_no_event(string name, byte[] tar, string marker)
    {
        await using var store = flotilla.OpenStore();
        async Task<int> EventCount()
        {
            await using var session = store.QuerySession();
            return await session.Events.QueryAllRawEvents().CountAsync();
        }
        var before = await EventCount();
        var path = WriteFile($"hostile-{name}.tar", tar);
        var result = await flotilla.RunDockerAsync("import", path, $"hostile/{name}:1");
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("Error response from daemon", result.Stderr);
        Assert.DoesNotContain($"hostile/{name}", await DockerOk("images"));
        Assert.Equal(before, await EventCount());
        Assert.False(File.Exists(Path.Combine(flotilla.DataRoot, marker)), "nothing written outside");
        Assert.False(File.Exists("/escape") || File.Exists("/evil"));
    }

    [Fact]
    public async Task Removing_the_last_image_of_a_layer_frees_its_blob_and_snapshot()
    {
        var unique = ArchiveFixtures.SmallLayer("unique.txt", Guid.NewGuid().ToString());
        var diffId = "sha256:" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(unique));
        var id = (await DockerOk("import", WriteFile("unique.tar", unique), "gc:1")).Trim();
        var blob = Path.Combine(flotilla.DataRoot, "content", "blobs", "sha256", diffId[7..]);
        var config = Path.Combine(flotilla.DataRoot, "content", "blobs", "sha256", id[7..]);
        Assert.True(File.Exists(blob) && File.Exists(config));
        var inspect = JsonDocument.Parse(await DockerOk("image", "inspect", "gc:1")).RootElement[0];
        var snapshot = inspect.GetProperty("GraphDriver").GetProperty("Data").GetProperty("UpperDir").GetString()!;
        Assert.True(Directory.Exists(snapshot));

        await DockerOk("rmi", "gc:1");
        Assert.False(File.Exists(blob), "layer blob freed");
        Assert.False(File.Exists(config), "config blob freed");
        Assert.False(Directory.Exists(snapshot), "snapshot freed");
    }

    [Fact]
    public async Task Bad_changes_and_names_get_dockers_errors()
    {
        var rootfs = WriteFile("bad.tar", ArchiveFixtures.BusyboxRootfs());
        var run = await flotilla.RunDockerAsync("import", "-c", "RUN ls", rootfs, "bad:1");
        Assert.Contains("run is not a valid change command", run.Stderr);

        var upper = await flotilla.RunDockerAsync("tag", "nope-image", "UPPER/Case");
        Assert.NotEqual(0, upper.ExitCode);

        var missing = await flotilla.RunDockerAsync("tag", "nope-image", "fine:1");
        Assert.Contains("No such image: nope-image", missing.Stderr);
    }
}
