using System.Net;
using System.Text.Json;
using Flotilla.Tests.Support;
using Xunit;
using static Flotilla.Tests.Registry.RegistryHttp;

namespace Flotilla.Tests.Registry;

/// <summary><c>flotilla registry gc</c> as a user runs it, and uploads that survive a restart.</summary>
[Collection("registry-host")]
public class RegistryGcSpec(RegistryFlotilla flotilla)
{
    private HttpClient Registry => flotilla.Registry;

    private string BlobPath(string digest) => Path.Combine(flotilla.DataRoot, "registry", "blobs", "sha256", digest[7..]);

    private Task<ProcessResult> FlotillaCliAsync(params string[] args) =>
        ProcessRunner.RunAsync("dotnet", [typeof(Flotilla.Cli.Commands.RegistryCommand).Assembly.Location, .. args, "--http", $"127.0.0.1:{flotilla.HttpPort}"],
            TimeSpan.FromSeconds(60), flotilla.CliEnvironment);

    [Fact]
    public async Task Gc_removes_only_blobs_no_manifest_references_and_spares_uploads_in_flight()
    {
        const string repo = "gc/app";
        var (manifest, config, layer) = await Registry.PushImageAsync(repo, "v1");
        var orphan = await Registry.PushBlobAsync(repo, RandomBytes(4096));
        // A manifest deleted from the repository no longer holds its blobs.
        var (dropped, droppedConfig, droppedLayer) = await Registry.PushImageAsync(repo, "old");
        using (var delete = await Registry.DeleteAsync($"v2/{repo}/manifests/{dropped}")) Assert.Equal(HttpStatusCode.Accepted, delete.StatusCode);
        // An upload in flight.
        var pending = RandomBytes(3000);
        using var start = await Registry.PostAsync($"v2/{repo}/blobs/uploads/", null);
        using (var patch = await Registry.PatchAsync(start.Headers.Location!.ToString(), Octets(pending, 0, 1000))) Assert.Equal(HttpStatusCode.Accepted, patch.StatusCode);

        // The default grace period (1 h) keeps everything that was just written.
        var graced = await FlotillaCliAsync("registry", "gc");
        Assert.True(graced.ExitCode == 0, graced.ToString());
        Assert.True(File.Exists(BlobPath(orphan)), graced.ToString());

        var result = await FlotillaCliAsync("registry", "gc", "--min-age", "0");
        Assert.True(result.ExitCode == 0, result.ToString());
        foreach (var removed in new[] { orphan, dropped, droppedConfig, droppedLayer })
        {
            Assert.Contains($"deleted {removed}", result.Stdout);
            Assert.False(File.Exists(BlobPath(removed)), removed);
        }
        foreach (var kept in new[] { manifest, config, layer })
        {
            Assert.DoesNotContain(kept, result.Stdout);
            Assert.True(File.Exists(BlobPath(kept)), kept);
        }
        using (var pull = await Registry.GetAsync($"v2/{repo}/manifests/v1")) Assert.Equal(HttpStatusCode.OK, pull.StatusCode);
        using (var orphaned = await Registry.GetAsync($"v2/{repo}/blobs/{orphan}")) Assert.Equal(HttpStatusCode.NotFound, orphaned.StatusCode);

        using (var patch = await Registry.PatchAsync(start.Headers.Location!.ToString(), Octets(pending, 1000)))
            Assert.Equal(HttpStatusCode.Accepted, patch.StatusCode);
        using var done = await Registry.PutAsync($"{start.Headers.Location}?digest={DigestOf(pending)}", null);
        Assert.Equal(HttpStatusCode.Created, done.StatusCode);

        var json = await FlotillaCliAsync("registry", "gc", "--min-age", "0", "--json");
        Assert.True(json.ExitCode == 0, json.ToString());
        var report = JsonDocument.Parse(json.Stdout).RootElement;
        Assert.Contains(DigestOf(pending), report.GetProperty("removed").EnumerateArray().Select(r => r.GetProperty("digest").GetString()));
    }

    [Fact]
    public async Task An_upload_resumes_after_the_host_restarts()
    {
        const string repo = "restart/app";
        var data = RandomBytes(3 * 1024 * 1024);
        using var start = await Registry.PostAsync($"v2/{repo}/blobs/uploads/", null);
        var location = start.Headers.Location!.ToString();
        using (var patch = new HttpRequestMessage(HttpMethod.Patch, location) { Content = Octets(data, 0, 2 * 1024 * 1024) })
        {
            patch.Content.Headers.TryAddWithoutValidation("Content-Range", $"0-{2 * 1024 * 1024 - 1}");
            using var patched = await Registry.SendAsync(patch);
            Assert.Equal(HttpStatusCode.Accepted, patched.StatusCode);
        }

        await flotilla.RestartAsync();

        using var status = await Registry.GetAsync(location);
        Assert.Equal(HttpStatusCode.NoContent, status.StatusCode);
        Assert.Equal($"0-{2 * 1024 * 1024 - 1}", status.Headers.GetValues("Range").Single());
        using (var rest = new HttpRequestMessage(HttpMethod.Patch, location) { Content = Octets(data, 2 * 1024 * 1024) })
        {
            rest.Content.Headers.TryAddWithoutValidation("Content-Range", $"{2 * 1024 * 1024}-{data.Length - 1}");
            using var patched = await Registry.SendAsync(rest);
            Assert.Equal(HttpStatusCode.Accepted, patched.StatusCode);
        }
        using var put = await Registry.PutAsync($"{location}?digest={DigestOf(data)}", null);
        Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        Assert.Equal(data, await Registry.GetByteArrayAsync($"v2/{repo}/blobs/{DigestOf(data)}"));
    }
}
