using System.Text.Json;
using Flotilla.NodeRuntime.Host;
using Flotilla.Tests.Registry;
using Flotilla.Tests.Support;
using Xunit;

namespace Flotilla.Tests.Gateway;

/// <summary>
/// Issue 13, item 10: a local user who is not root reads nothing of the data root (container environments in bundles,
/// writable layers, private registry blobs), and the audit trail names a container's environment variables without
/// their values, while the container itself still gets them.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public class DataAtRestSpec(RunningFlotilla flotilla) : IClassFixture<RunningFlotilla>, IAsyncLifetime
{
    private const string Image = "testbox:1";
    private const string Secret = "s3cr3t-hunter2";

    public async Task InitializeAsync()
    {
        if ((await flotilla.RunDockerAsync("image", "inspect", Image)).ExitCode == 0) return;
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

    /// <summary>Runs <paramref name="command"/> as user nobody.</summary>
    private static Task<ProcessResult> AsNobody(params string[] command) => ProcessRunner.RunAsync("runuser", ["-u", "nobody", "--", .. command]);

    private static void RootReadsNobodyDoesNot(ProcessResult asRoot, ProcessResult asNobody, string what)
    {
        Assert.True(asRoot.ExitCode == 0, $"root reads {what}: {asRoot}");
        Assert.True(asNobody.ExitCode != 0, $"nobody must not read {what}, but got: {asNobody}");
        Assert.DoesNotContain(Secret, asNobody.Stdout);
    }

    [Fact]
    public async Task A_local_user_reads_no_bundle_config_upper_dir_or_registry_blob()
    {
        var id = (await DockerOk("run", "-d", "--name", "rest-secret", "-e", $"DB_PASSWORD={Secret}", Image,
            "sh", "-c", $"echo {Secret} > /written-by-container; exec sleep 300")).Trim();
        var inspect = JsonDocument.Parse(await DockerOk("inspect", id)).RootElement[0];
        var upper = inspect.GetProperty("GraphDriver").GetProperty("Data").GetProperty("UpperDir").GetString()!;
        var config = Path.Combine(flotilla.DataRoot, "containers", id, "bundle", "config.json");
        Assert.True(await Eventually.TrueAsync(() => Task.FromResult(File.Exists(Path.Combine(upper, "written-by-container"))), TimeSpan.FromSeconds(10)));

        RootReadsNobodyDoesNot(await ProcessRunner.RunAsync("cat", [config]), await AsNobody("cat", config), "the bundle's config.json");
        RootReadsNobodyDoesNot(await ProcessRunner.RunAsync("ls", [upper]), await AsNobody("ls", upper), "the container's upper dir");
        var upperFile = Path.Combine(upper, "written-by-container");
        RootReadsNobodyDoesNot(await ProcessRunner.RunAsync("cat", [upperFile]), await AsNobody("cat", upperFile), "a file the container wrote");
        RootReadsNobodyDoesNot(await ProcessRunner.RunAsync("ls", [flotilla.DataRoot]), await AsNobody("ls", flotilla.DataRoot), "the data root's listing");

        var digest = await flotilla.Registry.PushBlobAsync("private/app", System.Text.Encoding.UTF8.GetBytes($"layer with {Secret}"));
        var blob = Path.Combine(flotilla.DataRoot, "registry", "blobs", "sha256", digest["sha256:".Length..]);
        RootReadsNobodyDoesNot(await ProcessRunner.RunAsync("cat", [blob]), await AsNobody("cat", blob), "a registry blob");

        Assert.Equal(DataRootPermissions.PrivateFile, File.GetUnixFileMode(config));
        Assert.Equal(DataRootPermissions.PrivateDirectory, File.GetUnixFileMode(Path.GetDirectoryName(config)!));
        Assert.Equal(DataRootPermissions.Root, File.GetUnixFileMode(flotilla.DataRoot));
        await DockerOk("rm", "-f", id);
    }

    [Fact]
    public async Task A_container_running_as_another_user_still_uses_its_rootfs()
    {
        var result = await flotilla.RunDockerAsync("run", "--rm", "--user", "1000", Image, "sh", "-c", "id -u; ls / | grep -c .; cat /hello.txt");
        Assert.True(result.ExitCode == 0, result.ToString());
        var lines = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("1000", lines[0]);
        Assert.True(int.Parse(lines[1]) > 3, result.Stdout);
        Assert.Equal("hello from flotilla", lines[2]);
    }

    [Fact]
    public async Task The_container_gets_its_environment_but_the_audit_trail_shows_names_only()
    {
        var output = await DockerOk("run", "--name", "rest-env", "-e", $"DB_PASSWORD={Secret}", "-e", "EMPTY=", Image, "env");
        Assert.Contains($"DB_PASSWORD={Secret}", output);

        foreach (var path in new[] { "api/audit/export?container=rest-env", "api/audit?container=rest-env", "api/audit?container=rest-env&format=csv",
                     "api/audit?container=rest-env&format=ndjson" })
        {
            var text = await flotilla.Native.GetStringAsync(path);
            Assert.Contains("container_created", text);
            Assert.DoesNotContain(Secret, text);
            Assert.Contains("DB_PASSWORD=<redacted>", text.Replace("\\u003C", "<").Replace("\\u003E", ">"));
        }
        // `flotilla audit` reads the same API; the event itself still holds the value the container is started from.
        await using var store = flotilla.OpenStore();
        await using var session = store.QuerySession();
        var id = JsonDocument.Parse(await DockerOk("inspect", "rest-env")).RootElement[0].GetProperty("Id").GetString();
        var created = (await session.Events.FetchStreamAsync("container-" + id))[0].Data;
        Assert.Contains($"DB_PASSWORD={Secret}", JsonSerializer.Serialize(created));
        await DockerOk("rm", "rest-env");
    }
}

/// <summary>The data root's modes, on a directory alone (no engine).</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public class DataRootPermissionsSpec : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "flt-modes-" + Guid.NewGuid().ToString("N")[..8]);

    private const UnixFileMode Open = (UnixFileMode)0b111_101_101; // 0755, what older versions left

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public void An_old_0755_tree_is_tightened_at_start()
    {
        foreach (var dir in new[] { "", "containers", "snapshots", "registry", "content", "volumes", "postgres" })
        {
            Directory.CreateDirectory(Path.Combine(_root, dir));
            File.SetUnixFileMode(Path.Combine(_root, dir), Open);
        }

        DataRootPermissions.Secure(_root);

        Assert.Equal(DataRootPermissions.Root, File.GetUnixFileMode(_root));
        foreach (var dir in new[] { "containers", "snapshots", "registry", "content", "volumes" })
            Assert.Equal(DataRootPermissions.PrivateDirectory, File.GetUnixFileMode(Path.Combine(_root, dir)));
        // The embedded PostgreSQL's directories belong to its service user: left as they are.
        Assert.Equal(Open, File.GetUnixFileMode(Path.Combine(_root, "postgres")));
    }

    [Fact]
    public void Private_files_are_written_0600_even_over_an_open_one()
    {
        Directory.CreateDirectory(_root);
        var path = Path.Combine(_root, "config.json");
        File.WriteAllText(path, "old");
        File.SetUnixFileMode(path, Open);
        DataRootPermissions.WritePrivateFileAtomically(path, "{}");
        Assert.Equal(DataRootPermissions.PrivateFile, File.GetUnixFileMode(path));
        Assert.Equal("{}", File.ReadAllText(path));
    }
}
