using System.Text.Json;
using Flotilla.NodeRuntime.Distribution;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Storage;
using Flotilla.Tests.Gateway;
using Flotilla.Tests.Images;
using Flotilla.Tests.Support;
using Marten;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Flotilla.Tests.Registry.Client;

/// <summary>
/// The engine as a registry client, driven by the real docker CLI: push, rmi, pull, run. Written against any V2
/// registry at <see cref="Registry"/> (host:port on loopback, plain HTTP): subclass it for another server.
/// </summary>
public abstract class RegistryInteropTests(RunningFlotilla flotilla)
{
    /// <summary>The registry under test, <c>127.0.0.1:&lt;port&gt;</c>.</summary>
    protected abstract string Registry { get; }

    protected RunningFlotilla Flotilla => flotilla;

    private static readonly SemaphoreSlim ImportLock = new(1, 1);

    protected async Task<string> DockerOk(params string[] args)
    {
        var result = await flotilla.RunDockerAsync(args);
        Assert.True(result.ExitCode == 0, $"docker {string.Join(' ', args)}: {result}");
        return result.Stdout;
    }

    /// <summary>A runnable busybox image, imported once per host as <c>interop/busybox:1</c>.</summary>
    protected async Task<string> BusyboxAsync()
    {
        const string name = "interop/busybox:1";
        await ImportLock.WaitAsync();
        try
        {
            if ((await flotilla.RunDockerAsync("image", "inspect", name)).ExitCode != 0)
            {
                Directory.CreateDirectory(flotilla.DataRoot);
                var path = Path.Combine(flotilla.DataRoot, "interop-rootfs.tar");
                await File.WriteAllBytesAsync(path, BusyboxImage.Rootfs());
                await DockerOk("import", "-c", "CMD [\"/bin/sh\"]", path, name);
            }
        }
        finally
        {
            ImportLock.Release();
        }
        return name;
    }

    /// <summary>A manifest as the registry serves it to a client that takes Docker schema 2 or OCI.</summary>
    protected async Task<byte[]> RegistryManifestAsync(string repository, string reference)
    {
        using var http = new HttpClient { BaseAddress = new Uri($"http://{Registry}/"), Timeout = TimeSpan.FromSeconds(30) };
        using var request = new HttpRequestMessage(HttpMethod.Get, $"v2/{repository}/manifests/{reference}");
        request.Headers.Accept.ParseAdd(MediaTypes.DockerManifest);
        request.Headers.Accept.ParseAdd(MediaTypes.OciManifest);
        using var response = await http.SendAsync(request);
        Assert.True(response.IsSuccessStatusCode, $"GET {repository}:{reference}: {(int)response.StatusCode}");
        return await response.Content.ReadAsByteArrayAsync();
    }

    protected static string Unique(string name) => $"{name}-{Guid.NewGuid().ToString("N")[..6]}";

    private async Task<IReadOnlyList<JasperFx.Events.IEvent>> ImageEventsAsync(string imageId)
    {
        await using var store = flotilla.OpenStore();
        await using var session = store.QuerySession();
        return await session.Events.FetchStreamAsync("image-" + imageId);
    }

    [Fact]
    public async Task Push_rmi_pull_and_run_round_trips_an_image()
    {
        var source = await BusyboxAsync();
        var repo = $"{Registry}/{Unique("roundtrip")}";
        await DockerOk("tag", source, repo);

        var push = await DockerOk("push", repo);
        Assert.Contains($"The push refers to repository [{repo}]", push);
        // Uploaded, or mounted when another test pushed the same layer to this registry first.
        Assert.True(push.Contains(": Pushed") || push.Contains(": Mounted from "), push);
        Assert.Matches(@"latest: digest: sha256:[0-9a-f]{64} size: \d+", push);
        var pushedDigest = System.Text.RegularExpressions.Regex.Match(push, "digest: (sha256:[0-9a-f]{64})").Groups[1].Value;
        // As dockerd pushes: a Docker schema 2 manifest of gzip layers.
        var pushedManifest = await RegistryManifestAsync(repo[(Registry.Length + 1)..], "latest");
        Assert.Equal(pushedDigest, Digest.Of(pushedManifest).ToString());
        var parsed = OciJson.Parse<OciManifest>(pushedManifest, "pushed manifest");
        Assert.Equal((MediaTypes.DockerManifest, MediaTypes.DockerConfig), (parsed.MediaType, parsed.Config.MediaType));
        Assert.All(parsed.Layers, l => Assert.Equal(MediaTypes.DockerLayerGzip, l.MediaType));

        var compressed = flotilla.Services.GetRequiredService<ImageDistribution>().Pusher.LayersCompressed;
        var again = await DockerOk("push", repo);
        Assert.Contains("Layer already exists", again);
        Assert.DoesNotContain("Pushed", again);
        Assert.Contains($"latest: digest: {pushedDigest}", again);
        Assert.Equal(compressed, flotilla.Services.GetRequiredService<ImageDistribution>().Pusher.LayersCompressed); // found, not compressed again

        // The raw stream ends with the aux record the CLI's --quiet and Docker.DotNet read the digest from.
        using var raw = new HttpRequestMessage(HttpMethod.Post, $"v1.50/images/{repo}/push?tag=latest");
        raw.Headers.Add("X-Registry-Auth", "e30=");
        using var rawResponse = await flotilla.Docker.SendAsync(raw);
        var lines = (await rawResponse.Content.ReadAsStringAsync()).Split("\r\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal($$"""{"progressDetail":{},"aux":{"Tag":"latest","Digest":"{{pushedDigest}}","Size":""", lines[^1][..(lines[^1].LastIndexOf(':') + 1)]);
        Assert.Equal($$"""{"status":"The push refers to repository [{{repo}}]"}""", lines[0]);

        var imageId = (await DockerOk("image", "inspect", "-f", "{{.Id}}", repo)).Trim();
        var pushedEvents = await ImageEventsAsync(imageId);
        var pushes = pushedEvents.Where(e => e.Data is Flotilla.Contracts.Images.ImagePushed p && p.Reference == repo + ":latest").ToList();
        Assert.Equal(3, pushes.Count); // each push is recorded, also one that found every blob there
        Assert.All(pushes, p => Assert.StartsWith("anonymous@", p.UserName));
        Assert.Equal(pushedDigest, ((Flotilla.Contracts.Images.ImagePushed)pushes[0].Data).ManifestDigest);

        await DockerOk("rmi", repo);
        await DockerOk("rmi", source);
        Assert.NotEqual(0, (await flotilla.RunDockerAsync("image", "inspect", repo)).ExitCode);

        var pull = await DockerOk("pull", repo);
        // (Other tests may hold the same image under other names: then no layer is fetched, as with dockerd.)
        Assert.Contains($"latest: Pulling from {repo[(Registry.Length + 1)..]}", pull);
        Assert.Contains($"Digest: {pushedDigest}", pull);
        Assert.Contains($"Status: Downloaded newer image for {repo}:latest", pull);
        Assert.Equal(imageId, (await DockerOk("image", "inspect", "-f", "{{.Id}}", repo)).Trim());
        Assert.Contains($"{repo}@{pushedDigest}", await DockerOk("image", "inspect", "-f", "{{json .RepoDigests}}", repo));

        Assert.Equal("hello from flotilla", (await DockerOk("run", "--rm", repo, "cat", "/hello.txt")).Trim());

        var upToDate = await DockerOk("pull", repo);
        Assert.Contains($"Status: Image is up to date for {repo}:latest", upToDate);
        var byDigest = await DockerOk("pull", $"{repo}@{pushedDigest}");
        Assert.Contains($"Status: Image is up to date for {repo}@{pushedDigest}", byDigest);

        var events = await ImageEventsAsync(imageId);
        var pulls = events.Where(e => e.Data is Flotilla.Contracts.Images.ImagePulled p && p.Reference == repo + ":latest").ToList();
        Assert.Equal(2, pulls.Count); // by tag; the pull by digest is recorded under its own reference
        Assert.Single(events, e => e.Data is Flotilla.Contracts.Images.ImagePulled p && p.Reference == $"{repo}@{pushedDigest}");
        var pulled = (Flotilla.Contracts.Images.ImagePulled)pulls[0].Data;
        Assert.Equal(pushedDigest, pulled.ManifestDigest);
        Assert.Equal(Registry, pulled.Registry);
        Assert.StartsWith("anonymous@", pulls[0].UserName);

        // The same layers pushed to another repository of the registry are mounted, not uploaded.
        var other = $"{Registry}/{Unique("mounted")}";
        await DockerOk("tag", repo, other);
        var mount = await DockerOk("push", other);
        Assert.Contains("Mounted from", mount);
    }

    [Fact]
    public async Task Pull_of_an_unknown_tag_fails_with_the_registrys_message()
    {
        var result = await flotilla.RunDockerAsync("pull", $"{Registry}/{Unique("nothing")}:nope");
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("manifest unknown", result.Stderr);
    }

    [Fact]
    public async Task Pull_decompresses_gzip_layers_and_runs()
    {
        var rootfs = BusyboxImage.Rootfs();
        var marker = Guid.NewGuid().ToString("N");
        var unique = ArchiveFixtures.SmallLayer("unique.txt", marker + "\n");
        var config = ArchiveFixtures.ConfigFor([rootfs, unique]);
        var repo = Unique("gzipped");
        await new RegistrySeeder(Registry).PushImageAsync(repo, "v1", config,
            [(ArchiveFixtures.Gzip(rootfs), MediaTypes.DockerLayerGzip), (ArchiveFixtures.Gzip(unique), MediaTypes.DockerLayerGzip)]);

        var pull = await DockerOk("pull", $"{Registry}/{repo}:v1");
        Assert.Contains("Pull complete", pull);
        Assert.Equal(Digest.Of(config).ToString(), (await DockerOk("image", "inspect", "-f", "{{.Id}}", $"{Registry}/{repo}:v1")).Trim());
        Assert.Equal(marker, (await DockerOk("run", "--rm", $"{Registry}/{repo}:v1", "cat", "/unique.txt")).Trim());

        // A second image on the same base: the base layer is already here.
        var top = ArchiveFixtures.SmallLayer("top.txt", marker + "-top\n");
        await new RegistrySeeder(Registry).PushImageAsync(repo, "v2", ArchiveFixtures.ConfigFor([rootfs, unique, top]),
            [(ArchiveFixtures.Gzip(rootfs), MediaTypes.DockerLayerGzip), (ArchiveFixtures.Gzip(unique), MediaTypes.DockerLayerGzip),
             (top, MediaTypes.OciLayer)]);
        var second = await DockerOk("pull", $"{Registry}/{repo}:v2");
        Assert.Equal(2, second.Split('\n').Count(l => l.EndsWith(": Already exists", StringComparison.Ordinal)));
        Assert.Single(second.Split('\n'), l => l.EndsWith(": Pull complete", StringComparison.Ordinal));

        // Pushed back (three layers at once, stored uncompressed), under two tags with --all-tags.
        var copy = $"{Registry}/{repo}-copy";
        await DockerOk("tag", $"{Registry}/{repo}:v2", $"{copy}:v2");
        await DockerOk("tag", $"{Registry}/{repo}:v1", $"{copy}:v1");
        var pushed = await DockerOk("push", "--all-tags", copy);
        Assert.Matches(@"v1: digest: sha256:[0-9a-f]{64}", pushed);
        Assert.Matches(@"v2: digest: sha256:[0-9a-f]{64}", pushed);
        // Each layer once: uploaded, or mounted from a repository known to hold it (the uncompressed ones pulled above, or
        // the busybox layer other tests pushed).
        Assert.Equal(3, pushed.Split('\n').Count(l => l.EndsWith(": Pushed", StringComparison.Ordinal) || l.Contains(": Mounted from ")));
        Assert.Contains($": Mounted from {repo}", pushed); // the top layer was pulled uncompressed from there
    }

    [Fact]
    public async Task A_layer_that_does_not_match_its_diff_id_fails_the_pull_in_the_stream()
    {
        var layer = ArchiveFixtures.SmallLayer("x.txt", Guid.NewGuid().ToString());
        var wrong = Digest.Of(ArchiveFixtures.SmallLayer("x.txt", "something else")).ToString();
        var repo = Unique("corrupt");
        await new RegistrySeeder(Registry).PushImageAsync(repo, "v1", ArchiveFixtures.ConfigFor([layer], [wrong]),
            [(ArchiveFixtures.Gzip(layer), MediaTypes.DockerLayerGzip)]);

        var result = await Flotilla.RunDockerAsync("pull", $"{Registry}/{repo}:v1");
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains($"does not match its diff_id: expected {wrong}", result.Stderr);
        Assert.Contains("Pulling fs layer", result.Stdout); // the error came in the progress stream
        Assert.NotEqual(0, (await Flotilla.RunDockerAsync("image", "inspect", $"{Registry}/{repo}:v1")).ExitCode);
    }

    [Fact]
    public async Task Pull_of_a_manifest_list_picks_the_host_platform_or_the_asked_one()
    {
        var seeder = new RegistrySeeder(Registry);
        var repo = Unique("multi");
        var entries = new List<OciDescriptor>();
        var configs = new Dictionary<string, byte[]>();
        foreach (var arch in new[] { "arm64", "amd64" })
        {
            var layer = ArchiveFixtures.SmallLayer("arch.txt", arch + "\n");
            var config = OciJson.Serialize(new ImageConfigFile
            {
                Architecture = arch,
                Os = "linux",
                RootFs = new RootFs { DiffIds = [Digest.Of(layer).ToString()] },
            });
            configs[arch] = config;
            var manifest = await seeder.PushImageAsync(repo, Digest.Of(OciJson.Serialize(arch)).Hex[..8], config, [(ArchiveFixtures.Gzip(layer), MediaTypes.DockerLayerGzip)]);
            entries.Add(manifest with { Platform = new OciPlatform { Architecture = arch, Os = "linux", Variant = arch == "arm64" ? "v8" : null } });
        }
        var list = OciJson.Serialize(new OciIndex { MediaType = MediaTypes.DockerManifestList, Manifests = entries });
        await seeder.PutManifestAsync(repo, "both", list, MediaTypes.DockerManifestList);

        var reference = $"{Registry}/{repo}:both";
        var pull = await DockerOk("pull", reference);
        Assert.Contains($"Digest: {Digest.Of(list)}", pull);
        Assert.Equal($"{Digest.Of(configs["amd64"])} amd64", (await DockerOk("image", "inspect", "-f", "{{.Id}} {{.Architecture}}", reference)).Trim());

        await DockerOk("pull", "--platform", "linux/arm64", reference);
        Assert.Equal($"{Digest.Of(configs["arm64"])} arm64", (await DockerOk("image", "inspect", "-f", "{{.Id}} {{.Architecture}}", reference)).Trim());
    }

    [Fact]
    public async Task Docker_DotNet_pushes_and_pulls_with_progress_messages()
    {
        var source = await BusyboxAsync();
        var repo = $"{Registry}/{Unique("dotnet")}";
        await DockerOk("tag", source, $"{repo}:dn");
        using var client = new Docker.DotNet.DockerClientConfiguration(new Uri($"tcp://127.0.0.1:{flotilla.DockerPort}")).CreateClient();

        var pushed = new List<Docker.DotNet.Models.JSONMessage>();
        await client.Images.PushImageAsync(repo, new Docker.DotNet.Models.ImagePushParameters { Tag = "dn" }, new Docker.DotNet.Models.AuthConfig(),
            new SyncProgress<Docker.DotNet.Models.JSONMessage>(pushed.Add));
        Assert.Null(pushed.FirstOrDefault(m => m.Error is not null)?.ErrorMessage);
        Assert.Contains(pushed, m => m.Status?.StartsWith("dn: digest: sha256:", StringComparison.Ordinal) == true);

        await client.Images.DeleteImageAsync($"{repo}:dn", new Docker.DotNet.Models.ImageDeleteParameters());
        var pulled = new List<Docker.DotNet.Models.JSONMessage>();
        await client.Images.CreateImageAsync(new Docker.DotNet.Models.ImagesCreateParameters { FromImage = repo, Tag = "dn" },
            new Docker.DotNet.Models.AuthConfig(), new SyncProgress<Docker.DotNet.Models.JSONMessage>(pulled.Add));
        Assert.Contains(pulled, m => m.Status == $"Status: Downloaded newer image for {repo}:dn");
        Assert.Equal("linux", (await client.Images.InspectImageAsync($"{repo}:dn")).Os);

        await Assert.ThrowsAnyAsync<Docker.DotNet.DockerApiException>(() => client.Images.CreateImageAsync(
            new Docker.DotNet.Models.ImagesCreateParameters { FromImage = repo, Tag = "missing" }, null,
            new SyncProgress<Docker.DotNet.Models.JSONMessage>(_ => { })));
    }

    private sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value)
        {
            lock (this) report(value);
        }
    }

    [Fact]
    public async Task Malformed_credentials_are_refused_with_400()
    {
        using var pull = new HttpRequestMessage(HttpMethod.Post, $"v1.50/images/create?fromImage={Registry}/x&tag=latest");
        pull.Headers.Add("X-Registry-Auth", "!!not base64!!");
        using var refused = await flotilla.Docker.SendAsync(pull);
        Assert.Equal(400, (int)refused.StatusCode);
        Assert.Contains("invalid X-Registry-Auth header", await refused.Content.ReadAsStringAsync());

        using var login = await flotilla.Docker.PostAsync("v1.50/auth", new StringContent("{\"username\":", System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(400, (int)login.StatusCode);
    }

    [Fact]
    public async Task Login_to_an_open_registry_succeeds()
    {
        var login = await DockerOk("login", "-u", "anyone", "-p", "anything", Registry);
        Assert.Contains("Login Succeeded", login);
    }
}

/// <summary>Against Debian's docker-registry (CNCF distribution 2.8.2).</summary>
public sealed class DistributionRegistryInteropSpec(RunningFlotilla flotilla, DistributionRegistry registry, DistributionRegistryWithBasicAuth secured)
    : RegistryInteropTests(flotilla), IClassFixture<RunningFlotilla>, IClassFixture<DistributionRegistry>, IClassFixture<DistributionRegistryWithBasicAuth>
{
    protected override string Registry => registry.Address;

    [Fact]
    public async Task Pull_of_an_image_pushed_by_skopeo_with_gzip_layers_runs()
    {
        var rootfs = BusyboxImage.Rootfs();
        var marker = Guid.NewGuid().ToString("N");
        var unique = ArchiveFixtures.SmallLayer("unique.txt", marker + "\n");
        var config = ArchiveFixtures.ConfigFor([rootfs, unique]);
        var dir = Path.Combine(Flotilla.DataRoot, Unique("oci-layout"));
        Directory.CreateDirectory(Path.Combine(dir, "blobs", "sha256"));
        async Task<OciDescriptor> Blob(byte[] bytes, string type)
        {
            await File.WriteAllBytesAsync(Path.Combine(dir, "blobs", "sha256", Digest.Of(bytes).Hex), bytes);
            return new OciDescriptor { MediaType = type, Digest = Digest.Of(bytes).ToString(), Size = bytes.Length };
        }
        var manifest = OciJson.Serialize(new OciManifest
        {
            MediaType = MediaTypes.OciManifest,
            Config = await Blob(config, MediaTypes.OciConfig),
            Layers = [await Blob(ArchiveFixtures.Gzip(rootfs), MediaTypes.OciLayerGzip), await Blob(ArchiveFixtures.Gzip(unique), MediaTypes.OciLayerGzip)],
        });
        var manifestDescriptor = await Blob(manifest, MediaTypes.OciManifest);
        await File.WriteAllTextAsync(Path.Combine(dir, "oci-layout"), """{"imageLayoutVersion":"1.0.0"}""");
        await File.WriteAllBytesAsync(Path.Combine(dir, "index.json"), OciJson.Serialize(new OciIndex
        {
            Manifests = [manifestDescriptor with { Annotations = new() { ["org.opencontainers.image.ref.name"] = "v1" } }],
        }));

        var repo = $"{Registry}/{Unique("skopeo")}";
        var copy = await ProcessRunner.RunAsync("skopeo", ["--insecure-policy", "copy", "--dest-tls-verify=false", $"oci:{dir}:v1", $"docker://{repo}:v1"]);
        Assert.True(copy.ExitCode == 0, copy.ToString());

        // docker run pulls what it does not have.
        var run = await Flotilla.RunDockerAsync("run", "--rm", $"{repo}:v1", "cat", "/unique.txt");
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(marker, run.Stdout.Trim());
        Assert.Contains($"Unable to find image '{repo}:v1' locally", run.Stderr);
        Assert.Contains("Pull complete", run.Stderr);
    }

    private string PodmanRoot => Path.Combine(Flotilla.DataRoot, "podman-" + GetHashCode().ToString("x"));

    private async Task<ProcessResult> PodmanAsync(params string[] args)
    {
        Directory.CreateDirectory(Path.Combine(PodmanRoot, "tmp"));
        var auth = Path.Combine(PodmanRoot, "auth.json");
        if (!File.Exists(auth)) await File.WriteAllTextAsync(auth, """{"auths":{}}""");
        string[] common = ["--root", Path.Combine(PodmanRoot, "root"), "--runroot", Path.Combine(PodmanRoot, "run"), "--storage-driver", "vfs",
            "--runtime", "runc", "--events-backend", "file", "--cgroup-manager", "cgroupfs", "--tmpdir", Path.Combine(PodmanRoot, "tmp")];
        return await ProcessRunner.RunAsync("podman", [.. common, .. args], TimeSpan.FromMinutes(2),
            new Dictionary<string, string> { ["TMPDIR"] = Path.Combine(PodmanRoot, "tmp"), ["REGISTRY_AUTH_FILE"] = auth });
    }

    [Fact]
    public async Task Skopeo_and_podman_read_a_docker_push_and_see_the_same_image_id()
    {
        var source = await BusyboxAsync();
        var imageId = (await DockerOk("image", "inspect", "-f", "{{.Id}}", source)).Trim();
        var repo = $"{Registry}/{Unique("readers")}";
        await DockerOk("tag", source, $"{repo}:1");
        var push = await DockerOk("push", $"{repo}:1");
        var pushedDigest = System.Text.RegularExpressions.Regex.Match(push, "digest: (sha256:[0-9a-f]{64})").Groups[1].Value;

        var inspect = await ProcessRunner.RunAsync("skopeo", ["--insecure-policy", "inspect", "--tls-verify=false", $"docker://{repo}:1"]);
        Assert.True(inspect.ExitCode == 0, inspect.ToString());
        using (var json = JsonDocument.Parse(inspect.Stdout))
        {
            Assert.Equal(pushedDigest, json.RootElement.GetProperty("Digest").GetString());
            Assert.NotEmpty(json.RootElement.GetProperty("Layers").EnumerateArray());
        }
        // skopeo copy verifies every blob against its digest; the dir: layout names them by digest.
        var dir = Path.Combine(Flotilla.DataRoot, Unique("skopeo-dir"));
        try
        {
            var copy = await ProcessRunner.RunAsync("skopeo", ["--insecure-policy", "copy", "--src-tls-verify=false", $"docker://{repo}:1", $"dir:{dir}"]);
            Assert.True(copy.ExitCode == 0, copy.ToString());
            var copied = OciJson.Parse<OciManifest>(await File.ReadAllBytesAsync(Path.Combine(dir, "manifest.json")), "copied manifest");
            Assert.Equal((MediaTypes.DockerManifest, imageId), (copied.MediaType, copied.Config.Digest));
            Assert.Equal(imageId, Digest.Of(await File.ReadAllBytesAsync(Path.Combine(dir, imageId["sha256:".Length..]))).ToString());
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }

        if (!File.Exists("/usr/bin/podman")) return;
        var probe = await PodmanAsync("images");
        if (probe.ExitCode != 0) return; // podman cannot run here; skopeo spoke for the containers/image side
        try
        {
            var pull = await PodmanAsync("pull", "--tls-verify=false", $"{repo}:1");
            Assert.True(pull.ExitCode == 0, pull.ToString());
            var id = await PodmanAsync("image", "inspect", "--format", "{{.Id}} {{.Digest}}", $"{repo}:1");
            Assert.True(id.ExitCode == 0, id.ToString());
            Assert.Equal($"{imageId["sha256:".Length..]} {pushedDigest}", id.Stdout.Trim());
        }
        finally
        {
            await PodmanAsync("rmi", "-a", "-f");
            try { Directory.Delete(PodmanRoot, recursive: true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }

    [Fact]
    public async Task Login_with_basic_auth_checks_the_password_and_push_uses_the_credentials()
    {
        var bad = await Flotilla.RunDockerAsync("login", "-u", DistributionRegistryWithBasicAuth.User, "-p", "wrong", secured.Address);
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("unauthorized", bad.Stderr, StringComparison.OrdinalIgnoreCase);

        var anonymous = await Flotilla.RunDockerAsync("pull", $"{secured.Address}/private:1");
        Assert.NotEqual(0, anonymous.ExitCode);
        Assert.Contains("unauthorized", anonymous.Stderr, StringComparison.OrdinalIgnoreCase);

        Assert.Contains("Login Succeeded", await DockerOk("login", "-u", DistributionRegistryWithBasicAuth.User, "-p",
            DistributionRegistryWithBasicAuth.Password, secured.Address));
        var repo = $"{secured.Address}/private";
        await DockerOk("tag", await BusyboxAsync(), $"{repo}:1");
        Assert.Contains("1: digest: sha256:", await DockerOk("push", $"{repo}:1"));
        await DockerOk("rmi", $"{repo}:1");
        Assert.Contains("Downloaded newer image", await DockerOk("pull", $"{repo}:1"));
    }

    [Fact]
    public async Task Search_asks_the_registrys_v1_search_and_filters_like_docker()
    {
        await using var index = await FakeSearchIndex.StartAsync();
        var found = await DockerOk("search", "--format", "{{.Name}}|{{.Description}}|{{.StarCount}}|{{.IsOfficial}}", $"{index.Address}/bus");
        Assert.Equal(["busybox|tiny|12|[OK]", "team/busy|a team's|3|"], found.Trim().Split('\n'));
        Assert.Equal("bus", index.LastQuery);

        Assert.Equal("busybox", (await DockerOk("search", "--format", "{{.Name}}", "--filter", "is-official=true", $"{index.Address}/bus")).Trim());
        Assert.Equal("busybox", (await DockerOk("search", "--format", "{{.Name}}", "--filter", "stars=5", $"{index.Address}/bus")).Trim());
        Assert.Equal("busybox", (await DockerOk("search", "--format", "{{.Name}}", "--limit", "1", $"{index.Address}/bus")).Trim());
        Assert.Equal("1", index.LastLimit);
    }

    [Fact]
    public async Task Search_on_a_registry_without_v1_search_reports_its_status()
    {
        var result = await Flotilla.RunDockerAsync("search", $"{Registry}/anything");
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("Unexpected status code 404", result.Stderr);
    }
}

/// <summary>A registry v1 search endpoint (<c>/v1/_ping</c>, <c>/v1/search</c>) on plain HTTP, as old registries serve it.</summary>
internal sealed class FakeSearchIndex : IAsyncDisposable
{
    private Microsoft.AspNetCore.Builder.WebApplication _app = null!;

    public string Address { get; private set; } = "";
    public string? LastQuery { get; private set; }
    public string? LastLimit { get; private set; }

    public static async Task<FakeSearchIndex> StartAsync()
    {
        var index = new FakeSearchIndex();
        var port = FreePort.Next();
        var builder = Microsoft.AspNetCore.Builder.WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
        var app = builder.Build();
        app.MapGet("/v1/_ping", () => Microsoft.AspNetCore.Http.Results.Text("true", "application/json"));
        app.MapGet("/v1/search", (Microsoft.AspNetCore.Http.HttpContext c) =>
        {
            index.LastQuery = c.Request.Query["q"];
            index.LastLimit = c.Request.Query["n"];
            Assert.Equal("true", c.Request.Headers["X-Docker-Token"].ToString());
            return Microsoft.AspNetCore.Http.Results.Text("""
                {"query":"bus","num_results":2,"results":[
                  {"name":"busybox","description":"tiny","star_count":12,"is_official":true,"is_automated":false},
                  {"name":"team/busy","description":"a team's","star_count":3,"is_official":false,"is_automated":true}]}
                """, "application/json");
        });
        await app.StartAsync();
        index._app = app;
        index.Address = $"127.0.0.1:{port}";
        return index;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

/// <summary>The all-in-one host started with <c>--insecure-registry</c> entries (none of them reachable from a test).</summary>
public sealed class FlotillaWithInsecureRegistries : RunningFlotilla
{
    protected override IReadOnlyList<string> InsecureRegistries => ["registry.example:5000", "10.20.0.0/16"];
}

/// <summary>Against Flotilla's own registry, from the same host: the tutorial flow `docker tag; docker push; docker pull`.</summary>
public sealed class FlotillaRegistryInteropSpec(FlotillaWithInsecureRegistries flotilla)
    : RegistryInteropTests(flotilla), IClassFixture<FlotillaWithInsecureRegistries>
{
    protected override string Registry => $"127.0.0.1:{Flotilla.RegistryPort}";

    [Fact]
    public async Task Pull_all_tags_pulls_every_tag_with_dockerds_progress()
    {
        var source = await BusyboxAsync();
        var path = Unique("alltags");
        var repo = $"{Registry}/{path}";
        await DockerOk("tag", source, $"{repo}:v1");
        await DockerOk("tag", source, $"{repo}:v2");
        // A distinct image for v3 (same layer, another config).
        await DockerOk("import", "-c", "ENV VARIANT=3", Path.Combine(Flotilla.DataRoot, "interop-rootfs.tar"), $"{repo}:v3");
        var v3Id = (await DockerOk("image", "inspect", "-f", "{{.Id}}", $"{repo}:v3")).Trim();
        await DockerOk("push", "--all-tags", repo);

        // The engine's client follows Link pages (Flotilla's registry pages when asked to).
        var distribution = Flotilla.Services.GetRequiredService<ImageDistribution>();
        var session = await distribution.Client.OpenAsync(Registry, null);
        Assert.Equal(["v1", "v2", "v3"], await session.ListTagsAsync(path, pageSize: 1));

        await DockerOk("rmi", $"{repo}:v1", $"{repo}:v2", $"{repo}:v3");
        var pull = await DockerOk("pull", "--all-tags", repo);
        foreach (var tag in new[] { "v1", "v2", "v3" })
            Assert.Contains($"{tag}: Pulling from {path}", pull);
        Assert.Equal(3, System.Text.RegularExpressions.Regex.Matches(pull, @"Digest: sha256:[0-9a-f]{64}").Count);
        Assert.Contains($"Status: Downloaded newer image for {repo}", pull);
        Assert.DoesNotContain("Using default tag", pull);
        Assert.Equal(v3Id, (await DockerOk("image", "inspect", "-f", "{{.Id}}", $"{repo}:v3")).Trim());
        Assert.Equal((await DockerOk("image", "inspect", "-f", "{{.Id}}", source)).Trim(),
            (await DockerOk("image", "inspect", "-f", "{{.Id}}", $"{repo}:v2")).Trim());

        var again = await DockerOk("pull", "-a", repo);
        Assert.Contains($"Status: Image is up to date for {repo}", again);

        var unknown = await Flotilla.RunDockerAsync("pull", "-a", $"{Registry}/{Unique("nothing")}");
        Assert.NotEqual(0, unknown.ExitCode);
        Assert.Contains("not found", unknown.ToString());
    }

    [Fact]
    public async Task Docker_info_lists_the_insecure_registries()
    {
        var info = await DockerOk("info");
        var section = info[info.IndexOf(" Insecure Registries:", StringComparison.Ordinal)..];
        var lines = section.Split('\n').Skip(1).TakeWhile(l => l.StartsWith("  ", StringComparison.Ordinal)).Select(l => l.Trim()).ToList();
        Assert.Equal(["registry.example:5000", "::1/128", "127.0.0.0/8", "10.20.0.0/16"], lines);

        var json = await DockerOk("info", "--format", "{{json .RegistryConfig}}");
        using var config = JsonDocument.Parse(json);
        Assert.False(config.RootElement.GetProperty("IndexConfigs").GetProperty("registry.example:5000").GetProperty("Secure").GetBoolean());
        Assert.True(config.RootElement.GetProperty("IndexConfigs").GetProperty("docker.io").GetProperty("Official").GetBoolean());
    }

    [Fact]
    public async Task Search_finds_pushed_repositories_through_the_v1_search()
    {
        var image = await BusyboxAsync();
        var repository = Unique("searchable/app");
        await DockerOk("tag", image, $"{Registry}/{repository}:1");
        await DockerOk("push", $"{Registry}/{repository}:1");
        var found = await DockerOk("search", "--format", "{{.Name}}", $"{Registry}/searchable");
        Assert.Contains(repository, found);
    }
}
