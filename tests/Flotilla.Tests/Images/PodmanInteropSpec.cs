using System.Text.Json;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Storage;
using Flotilla.Tests.Support;
using Xunit;
using static Flotilla.Tests.Images.ArchiveFixtures;

namespace Flotilla.Tests.Images;

/// <summary>
/// Archives cross the border with Debian's podman both ways. Podman runs against its own storage under a temp dir
/// (<c>--root/--runroot</c>, vfs driver), never the system's.
/// </summary>
public sealed class PodmanInteropSpec : IDisposable
{
    private readonly TempStore _temp = new();
    private readonly string _podmanRoot;

    public PodmanInteropSpec() => _podmanRoot = Path.Combine(_temp.Dir, "podman");

    public void Dispose() => _temp.Dispose();

    private static string? PodmanPath => new[] { "/usr/bin/podman", "/usr/local/bin/podman" }.FirstOrDefault(File.Exists);

    private async Task<ProcessResult> PodmanAsync(params string[] args)
    {
        string[] common = ["--root", Path.Combine(_podmanRoot, "root"), "--runroot", Path.Combine(_podmanRoot, "run"), "--storage-driver", "vfs",
            "--events-backend", "file", "--cgroup-manager", "cgroupfs", "--tmpdir", Path.Combine(_podmanRoot, "tmp")];
        Directory.CreateDirectory(Path.Combine(_podmanRoot, "tmp"));
        return await ProcessRunner.RunAsync(PodmanPath!, [.. common, .. args], TimeSpan.FromMinutes(2),
            new Dictionary<string, string> { ["TMPDIR"] = Path.Combine(_podmanRoot, "tmp") });
    }

    private async Task SkipUnlessPodmanRunsAsync()
    {
        Skip.If(PodmanPath is null, "podman is not installed (apt-get install -y podman)");
        var probe = await PodmanAsync("images");
        Skip.If(probe.ExitCode != 0, $"podman cannot run here: {probe.Stderr.Trim()}");
    }

    private async Task<(string Id, string[] Layers)> InspectAsync(string reference)
    {
        var result = await PodmanAsync("image", "inspect", reference);
        Assert.True(result.ExitCode == 0, result.ToString());
        var image = JsonDocument.Parse(result.Stdout).RootElement[0];
        return (image.GetProperty("Id").GetString()!,
            image.GetProperty("RootFS").GetProperty("Layers").EnumerateArray().Select(e => e.GetString()!).ToArray());
    }

    [SkippableFact]
    public async Task Podman_loads_what_flotilla_saved()
    {
        await SkipUnlessPodmanRunsAsync();
        var image = Busybox();
        await PutAsync(_temp.Store, image);
        var file = Path.Combine(_temp.Dir, "flotilla-save.tar");
        await using (var output = File.Create(file))
            await new ImageArchiveWriter(_temp.Store).WriteAsync(output, [new ImageToSave(image.Id, ["localhost/flotilla/bb:1"])]);

        var load = await PodmanAsync("load", "-i", file);
        Assert.True(load.ExitCode == 0, load.ToString());
        var (id, layers) = await InspectAsync("localhost/flotilla/bb:1");
        Assert.Equal(image.Id.Hex, id);
        Assert.Equal(image.DiffIds.Select(d => d.ToString()), layers);
    }

    [SkippableTheory]
    [InlineData("docker-archive")]
    [InlineData("oci-archive")]
    public async Task Flotilla_loads_what_podman_saved(string format)
    {
        await SkipUnlessPodmanRunsAsync();
        var rootfs = Path.Combine(_temp.Dir, "rootfs.tar");
        await File.WriteAllBytesAsync(rootfs, BusyboxRootfs());
        var import = await PodmanAsync("import", "--change", "CMD [\"/bin/sh\"]", rootfs, "localhost/pm/bb:2");
        Assert.True(import.ExitCode == 0, import.ToString());
        var (id, layers) = await InspectAsync("localhost/pm/bb:2");

        var file = Path.Combine(_temp.Dir, $"podman-{format}.tar");
        var save = await PodmanAsync("save", "--format", format, "-o", file, "localhost/pm/bb:2");
        Assert.True(save.ExitCode == 0, save.ToString());

        await using var input = File.OpenRead(file);
        var loaded = Assert.Single(await new ImageArchiveReader(_temp.Store).LoadAsync(input));
        Assert.Equal(id, loaded.ImageId.Hex);
        Assert.Equal(layers, loaded.Layers.Select(l => l.Digest.ToString()));
        Assert.Equal(["localhost/pm/bb:2"], loaded.RepoTags);
        Assert.Equal(["/bin/sh"], loaded.Config.Config!.Cmd!);
        Assert.Empty(_temp.SpoolLeftovers());
    }
}
