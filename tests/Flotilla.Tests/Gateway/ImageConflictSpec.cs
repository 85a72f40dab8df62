using System.Formats.Tar;
using System.Net;
using System.Text;
using System.Text.Json;
using Flotilla.Tests.Images;
using Flotilla.Tests.Support;
using Xunit;

namespace Flotilla.Tests.Gateway;

/// <summary>
/// <c>docker rmi</c> and <c>docker image prune -a</c> on images that containers use, through the real docker CLI against
/// the all-in-one host with real containers: moby's rules (daemon/images/image_delete.go) for every container state,
/// by tag and by id, with and without <c>-f</c>; and the container still starts afterwards (its layers are kept even when
/// the image record goes, as dockerd's layer store keeps a container's layers).
/// </summary>
public class ImageConflictSpec(RunningFlotilla flotilla) : IClassFixture<RunningFlotilla>
{
    public enum State { Created, Exited, Running }

    /// <summary>What moby answers for one case of the matrix.</summary>
    public enum Outcome { MustForceReference, UntaggedOnly, UntaggedAndDeleted, MustForceStopped, CannotForceRunning }

    public static IEnumerable<object[]> Matrix() =>
    [
        [State.Created, false, false, Outcome.MustForceReference],
        [State.Exited, false, false, Outcome.MustForceReference],
        [State.Running, false, false, Outcome.MustForceReference],
        [State.Created, false, true, Outcome.UntaggedAndDeleted],
        [State.Exited, false, true, Outcome.UntaggedAndDeleted],
        [State.Running, false, true, Outcome.UntaggedOnly],
        [State.Created, true, false, Outcome.MustForceStopped],
        [State.Exited, true, false, Outcome.MustForceStopped],
        [State.Running, true, false, Outcome.CannotForceRunning],
        [State.Created, true, true, Outcome.UntaggedAndDeleted],
        [State.Exited, true, true, Outcome.UntaggedAndDeleted],
        [State.Running, true, true, Outcome.CannotForceRunning],
    ];

    private const string StartedLine = "started";

    /// <summary>Sleeps on its first run, prints <see cref="StartedLine"/> and exits on the next (the writable layer keeps /ran).</summary>
    private static readonly string[] SleepThenPrint = ["sh", "-c", $"if [ -e /ran ]; then echo {StartedLine}; else touch /ran; sleep 1000; fi"];

    [Theory]
    [MemberData(nameof(Matrix))]
    public async Task Rmi_of_an_image_a_container_uses_follows_mobys_rules_and_the_container_still_starts(State state, bool byId, bool force,
        Outcome outcome)
    {
        var tag = $"rmi-{state.ToString().ToLowerInvariant()}/{(byId ? "id" : "tag")}{(force ? "-f" : "")}:1";
        var (imageId, layerBlob) = await ImportUniqueAsync(tag);
        var container = await ContainerAsync(state, $"rmi-{state}-{(byId ? "id" : "tag")}{(force ? "-f" : "")}".ToLowerInvariant(), tag);

        string[] args = ["rmi", .. force ? new[] { "-f" } : [], byId ? imageId[7..19] : tag];
        var result = await flotilla.RunDockerAsync(args);
        var image = await flotilla.RunDockerAsync("image", "inspect", "--format", "{{json .RepoTags}}", imageId);
        switch (outcome)
        {
            case Outcome.MustForceReference:
                Refused(result, $"Error response from daemon: conflict: unable to remove repository reference \"{tag}\" (must force) - container {container[..12]} is using its referenced image {imageId[7..19]}");
                Assert.Equal($"[\"{tag}\"]", image.Stdout.Trim());
                break;
            case Outcome.MustForceStopped:
                Refused(result, $"Error response from daemon: conflict: unable to delete {imageId[7..19]} (must be forced) - image is being used by stopped container {container[..12]}");
                Assert.Equal($"[\"{tag}\"]", image.Stdout.Trim());
                break;
            case Outcome.CannotForceRunning:
                Refused(result, $"Error response from daemon: conflict: unable to delete {imageId[7..19]} (cannot be forced) - image is being used by running container {container[..12]}");
                Assert.Equal($"[\"{tag}\"]", image.Stdout.Trim());
                break;
            case Outcome.UntaggedOnly:
                Assert.True(result.ExitCode == 0, result.ToString());
                Assert.Equal($"Untagged: {tag}", result.Stdout.Trim());
                Assert.True(image.ExitCode == 0, $"the image stays while a running container uses it: {image}");
                Assert.Equal("[]", image.Stdout.Trim());
                break;
            case Outcome.UntaggedAndDeleted:
                Assert.True(result.ExitCode == 0, result.ToString());
                Assert.Equal($"Untagged: {tag}\nDeleted: {imageId}", result.Stdout.Trim());
                Assert.Contains("No such image", image.Stderr);
                break;
        }
        Assert.True(File.Exists(layerBlob), "the container's layer blob is kept");

        if (state == State.Running) await KillAsync(container);
        var started = await flotilla.RunDockerAsync("start", "-a", container);
        Assert.True(started.ExitCode == 0, $"docker start -a after rmi: {started}");
        Assert.Equal(StartedLine, started.Stdout.Trim());
        await DockerOk("rm", "-f", container);
    }

    [Fact]
    public async Task A_refused_rmi_is_a_409_with_dockers_message()
    {
        var (imageId, _) = await ImportUniqueAsync("rmi-http/a:1");
        var container = await ContainerAsync(State.Created, "rmi-http", "rmi-http/a:1");
        using var response = await flotilla.Docker.DeleteAsync($"v1.51/images/{imageId[7..19]}");
        Assert.Equal(HttpStatusCode.Conflict, response.StatusCode);
        var message = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("message").GetString();
        Assert.Equal($"conflict: unable to delete {imageId[7..19]} (must be forced) - image is being used by stopped container {container[..12]}", message);
        await DockerOk("rm", "-f", container);
    }

    [Fact]
    public async Task Another_tag_of_the_image_can_be_removed_while_a_container_uses_it()
    {
        var (imageId, _) = await ImportUniqueAsync("rmi-two/a:1");
        await DockerOk("tag", "rmi-two/a:1", "rmi-two/b:1");
        var container = await ContainerAsync(State.Created, "rmi-two", "rmi-two/a:1");
        Assert.Equal("Untagged: rmi-two/b:1", (await DockerOk("rmi", "rmi-two/b:1")).Trim());
        Refused(await flotilla.RunDockerAsync("rmi", "rmi-two/a:1"),
            $"conflict: unable to remove repository reference \"rmi-two/a:1\" (must force) - container {container[..12]} is using its referenced image {imageId[7..19]}");
        await DockerOk("rm", "-f", container);
        Assert.Equal($"Untagged: rmi-two/a:1\nDeleted: {imageId}", (await DockerOk("rmi", "rmi-two/a:1")).Trim());
    }

    [Fact]
    public async Task A_committed_image_keeps_its_blobs_and_its_parent_is_refused_while_it_exists()
    {
        var (baseId, _) = await ImportUniqueAsync("rmi-commit/base:1");
        var source = await ContainerAsync(State.Exited, "rmi-commit-src", "rmi-commit/base:1");
        var committed = (await DockerOk("commit", source, "rmi-commit/child:1")).Trim();
        var child = await ContainerAsync(State.Created, "rmi-commit-child", "rmi-commit/child:1");
        var inspect = JsonDocument.Parse(await DockerOk("image", "inspect", committed)).RootElement[0];
        var topLayer = inspect.GetProperty("RootFS").GetProperty("Layers").EnumerateArray().Last().GetString()!;
        var topBlob = Path.Combine(flotilla.DataRoot, "content", "blobs", "sha256", topLayer[7..]);

        Refused(await flotilla.RunDockerAsync("rmi", "rmi-commit/child:1"),
            $"conflict: unable to remove repository reference \"rmi-commit/child:1\" (must force) - container {child[..12]} is using its referenced image {committed[7..19]}");
        await DockerOk("rm", "-f", source);
        // The base has no container now, but a child image: by id it cannot go, even forced; by its tag only the tag goes.
        Refused(await flotilla.RunDockerAsync("rmi", "-f", baseId[7..19]),
            $"conflict: unable to delete {baseId[7..19]} (cannot be forced) - image has dependent child images");
        Assert.Equal("Untagged: rmi-commit/base:1", (await DockerOk("rmi", "rmi-commit/base:1")).Trim());
        Assert.Equal(0, (await flotilla.RunDockerAsync("image", "inspect", baseId)).ExitCode);

        // Forced past the created container; the base, untagged and needed by nothing else now, goes with it (noprune off).
        Assert.Equal($"Untagged: rmi-commit/child:1\nDeleted: {committed}\nDeleted: {baseId}", (await DockerOk("rmi", "-f", "rmi-commit/child:1")).Trim());
        Assert.True(File.Exists(topBlob), "the committed layer's blob is kept for the container");
        var started = await flotilla.RunDockerAsync("start", "-a", child);
        Assert.True(started.ExitCode == 0, $"docker start -a after rmi: {started}");
        Assert.Equal(StartedLine, started.Stdout.Trim());
        await DockerOk("rm", "-f", child);
    }

    [Fact]
    public async Task Prune_all_keeps_every_image_a_container_uses_and_every_parent_of_an_image()
    {
        var (unused, unusedBlob) = await ImportUniqueAsync("prune/unused:1");
        var (forCreated, createdBlob) = await ImportUniqueAsync("prune/created:1");
        var (forExited, exitedBlob) = await ImportUniqueAsync("prune/exited:1");
        var (forRunning, runningBlob) = await ImportUniqueAsync("prune/running:1");
        var (byIdOnly, byIdBlob) = await ImportUniqueAsync("prune/byid:1");
        var (parent, _) = await ImportUniqueAsync("prune/parent:1");
        var created = await ContainerAsync(State.Created, "prune-created", "prune/created:1");
        var exited = await ContainerAsync(State.Exited, "prune-exited", "prune/exited:1");
        var running = await ContainerAsync(State.Running, "prune-running", "prune/running:1");
        var untagged = await ContainerAsync(State.Created, "prune-byid", byIdOnly[7..19]);
        await DockerOk("tag", "prune/unused:1", "prune/byid:1"); // the tag moves on: its container is all that holds it
        var source = await ContainerAsync(State.Exited, "prune-commit-src", "prune/parent:1");
        var child = (await DockerOk("commit", source, "prune/child:1")).Trim();
        await DockerOk("rm", "-f", source);
        await DockerOk("rmi", "prune/parent:1");

        var pruned = await DockerOk("image", "prune", "-a", "-f");
        Assert.Contains("untagged: prune/byid:1", pruned);
        Assert.Contains($"deleted: {unused}", pruned);
        Assert.Contains($"deleted: {child}", pruned);
        Assert.False(File.Exists(unusedBlob), "an unused image's blob is freed");
        foreach (var kept in new[] { forCreated, forExited, forRunning, byIdOnly })
        {
            Assert.DoesNotContain(kept, pruned);
            Assert.Equal(0, (await flotilla.RunDockerAsync("image", "inspect", kept)).ExitCode);
        }
        foreach (var blob in new[] { createdBlob, exitedBlob, runningBlob, byIdBlob }) Assert.True(File.Exists(blob), blob);
        // An untagged image with children is no candidate itself (moby), but goes with its last child.
        Assert.Contains($"deleted: {parent}", pruned);
        Assert.DoesNotContain("deleted:", await DockerOk("image", "prune", "-a", "-f"));

        await KillAsync(running);
        foreach (var container in new[] { created, exited, running, untagged })
        {
            var started = await flotilla.RunDockerAsync("start", "-a", container);
            Assert.True(started.ExitCode == 0, $"docker start -a after prune: {started}");
            Assert.Equal(StartedLine, started.Stdout.Trim());
            await DockerOk("rm", "-f", container);
        }
    }

    /// <summary>kill returns once the signal is sent (as dockerd's): wait for the exit before the next start.</summary>
    private async Task KillAsync(string container)
    {
        await DockerOk("kill", container);
        await DockerOk("wait", container);
    }

    private static void Refused(ProcessResult result, string message)
    {
        Assert.True(result.ExitCode == 1, $"expected exit code 1: {result}");
        Assert.Contains(message, result.Stderr);
    }

    private async Task<string> DockerOk(params string[] args)
    {
        var result = await flotilla.RunDockerAsync(args);
        Assert.True(result.ExitCode == 0, $"docker {string.Join(' ', args)}: {result}");
        return result.Stdout;
    }

    /// <summary>Imports busybox plus a file of its own, so the image's layer is shared with no other image.</summary>
    private async Task<(string ImageId, string LayerBlob)> ImportUniqueAsync(string tag)
    {
        var rootfs = UniqueRootfs(tag);
        var diffId = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(rootfs));
        Directory.CreateDirectory(flotilla.DataRoot);
        var path = Path.Combine(flotilla.DataRoot, $"rootfs-{Guid.NewGuid():N}.tar");
        await File.WriteAllBytesAsync(path, rootfs);
        var id = (await DockerOk("import", path, tag)).Trim();
        File.Delete(path);
        var blob = Path.Combine(flotilla.DataRoot, "content", "blobs", "sha256", diffId);
        Assert.True(File.Exists(blob), $"the import stored its layer as {blob}");
        return (id, blob);
    }

    private static byte[] UniqueRootfs(string marker) => ArchiveFixtures.Tar(w =>
    {
        using var reader = new TarReader(new MemoryStream(BusyboxImage.Rootfs()));
        while (reader.GetNextEntry(copyData: true) is { } entry) w.WriteEntry(entry);
        ArchiveFixtures.AddFile(w, "marker.txt", Encoding.UTF8.GetBytes(marker + " " + Guid.NewGuid() + "\n"));
    });

    /// <summary>A container of the image in the given state; its next start prints <see cref="StartedLine"/>.</summary>
    private async Task<string> ContainerAsync(State state, string name, string image) => state switch
    {
        State.Created => (await DockerOk("create", "--name", name, image, "echo", StartedLine)).Trim(),
        State.Exited => await ExitedAsync(name, image),
        _ => (await DockerOk(["run", "-d", "--name", name, image, .. SleepThenPrint])).Trim(),
    };

    private async Task<string> ExitedAsync(string name, string image)
    {
        Assert.Equal(StartedLine, (await DockerOk("run", "--name", name, image, "echo", StartedLine)).Trim());
        return (await DockerOk("inspect", "--format", "{{.Id}}", name)).Trim();
    }
}
