using System.Text.Json;
using Flotilla.Tests.Images;
using Flotilla.Tests.Support;
using Xunit;
using static Flotilla.Tests.Images.ArchiveFixtures;

namespace Flotilla.Tests.Registry;

/// <summary>
/// Real registry clients against the registry listener: Debian's skopeo (OCI archive, dir, Docker schema 2,
/// a multi-platform index) and podman (pull, push; its own storage under a temp dir, never the system's).
/// </summary>
[Collection("registry-host")]
public sealed class RegistryInteropSpec(RegistryFlotilla flotilla) : IDisposable
{
    private readonly TempStore _temp = new();

    public void Dispose() => _temp.Dispose();

    /// <summary>An empty credentials file of our own, so no client reads the user's.</summary>
    private string AuthFile
    {
        get
        {
            var path = Path.Combine(_temp.Dir, "auth.json");
            if (!File.Exists(path))
            {
                Directory.CreateDirectory(_temp.Dir);
                File.WriteAllText(path, """{"auths":{}}""");
            }
            return path;
        }
    }

    private string Ref(string repoAndTag) => $"docker://127.0.0.1:{flotilla.RegistryPort}/{repoAndTag}";

    private Task<ProcessResult> SkopeoAsync(params string[] args) =>
        ProcessRunner.RunAsync("skopeo", ["--insecure-policy", .. args], TimeSpan.FromMinutes(2),
            new Dictionary<string, string> { ["REGISTRY_AUTH_FILE"] = AuthFile });

    private static void Ok(ProcessResult result) => Assert.True(result.ExitCode == 0, result.ToString());

    [SkippableFact]
    public async Task Skopeo_copies_an_oci_archive_in_and_back_out_through_dir_and_docker_schema2()
    {
        Skip.If(!File.Exists("/usr/bin/skopeo"), "skopeo is not installed");
        var image = Busybox();
        var archive = Path.Combine(_temp.Dir, "busybox-oci.tar");
        await File.WriteAllBytesAsync(archive, OciLayout(image, [new() { ["org.opencontainers.image.ref.name"] = "1" }]));

        // --all pushes the whole index: both platform manifests, then the index that lists them.
        Ok(await SkopeoAsync("copy", "--all", "--dest-tls-verify=false", $"oci-archive:{archive}:1", Ref("interop/busybox:1")));

        var tags = await SkopeoAsync("list-tags", "--tls-verify=false", Ref("interop/busybox"));
        Ok(tags);
        Assert.Equal(["1"], JsonDocument.Parse(tags.Stdout).RootElement.GetProperty("Tags").EnumerateArray().Select(t => t.GetString()));

        var raw = await SkopeoAsync("inspect", "--raw", "--tls-verify=false", Ref("interop/busybox:1"));
        Ok(raw);
        Assert.Equal("application/vnd.oci.image.index.v1+json", JsonDocument.Parse(raw.Stdout).RootElement.GetProperty("mediaType").GetString());

        var inspect = await SkopeoAsync("inspect", "--tls-verify=false", Ref("interop/busybox:1"));
        Ok(inspect);
        var info = JsonDocument.Parse(inspect.Stdout).RootElement;
        Assert.Equal(image.Layers.Count, info.GetProperty("Layers").GetArrayLength());

        var dir = Path.Combine(_temp.Dir, "pulled");
        Ok(await SkopeoAsync("copy", "--src-tls-verify=false", Ref("interop/busybox:1"), $"dir:{dir}"));
        var manifest = JsonDocument.Parse(await File.ReadAllBytesAsync(Path.Combine(dir, "manifest.json"))).RootElement;
        var configDigest = manifest.GetProperty("config").GetProperty("digest").GetString()!;
        Assert.Equal(image.Id.ToString(), configDigest);
        foreach (var layer in manifest.GetProperty("layers").EnumerateArray())
        {
            var digest = layer.GetProperty("digest").GetString()!;
            Assert.Equal(digest, RegistryHttp.DigestOf(await File.ReadAllBytesAsync(Path.Combine(dir, digest[7..]))));
        }

        // Back in as Docker schema 2, into another repository (the layers are mounted or re-uploaded).
        Ok(await SkopeoAsync("copy", "--dest-tls-verify=false", "--format", "v2s2", $"dir:{dir}", Ref("interop/docker-format:v2s2")));
        var schema2 = await SkopeoAsync("inspect", "--raw", "--tls-verify=false", Ref("interop/docker-format:v2s2"));
        Ok(schema2);
        Assert.Equal("application/vnd.docker.distribution.manifest.v2+json",
            JsonDocument.Parse(schema2.Stdout).RootElement.GetProperty("mediaType").GetString());
    }

    private string PodmanRoot => Path.Combine(_temp.Dir, "podman");

    private async Task<ProcessResult> PodmanAsync(params string[] args)
    {
        Directory.CreateDirectory(Path.Combine(PodmanRoot, "tmp"));
        string[] common = ["--root", Path.Combine(PodmanRoot, "root"), "--runroot", Path.Combine(PodmanRoot, "run"), "--storage-driver", "vfs",
            "--runtime", "runc", "--events-backend", "file", "--cgroup-manager", "cgroupfs", "--tmpdir", Path.Combine(PodmanRoot, "tmp")];
        return await ProcessRunner.RunAsync("podman", [.. common, .. args], TimeSpan.FromMinutes(2),
            new Dictionary<string, string>
            {
                ["TMPDIR"] = Path.Combine(PodmanRoot, "tmp"),
                ["REGISTRY_AUTH_FILE"] = AuthFile,
            });
    }

    [SkippableFact]
    public async Task Podman_pushes_and_pulls()
    {
        Skip.If(!File.Exists("/usr/bin/podman"), "podman is not installed");
        var probe = await PodmanAsync("images");
        Skip.If(probe.ExitCode != 0, $"podman cannot run here: {probe.Stderr.Trim()}");

        var rootfs = Path.Combine(_temp.Dir, "rootfs.tar");
        await File.WriteAllBytesAsync(rootfs, BusyboxRootfs());
        Ok(await PodmanAsync("import", "--change", "CMD [\"/bin/sh\"]", rootfs, "localhost/pm/bb:1"));
        var host = $"127.0.0.1:{flotilla.RegistryPort}";
        Ok(await PodmanAsync("push", "--tls-verify=false", "localhost/pm/bb:1", $"docker://{host}/interop/podman:pushed"));
        Ok(await PodmanAsync("rmi", "localhost/pm/bb:1"));

        Ok(await PodmanAsync("pull", "--tls-verify=false", $"{host}/interop/podman:pushed"));
        var inspect = await PodmanAsync("image", "inspect", $"{host}/interop/podman:pushed");
        Ok(inspect);
        var layers = JsonDocument.Parse(inspect.Stdout).RootElement[0].GetProperty("RootFS").GetProperty("Layers");
        Assert.Equal(RegistryHttp.DigestOf(await File.ReadAllBytesAsync(rootfs)), Assert.Single(layers.EnumerateArray()).GetString());
    }
}
