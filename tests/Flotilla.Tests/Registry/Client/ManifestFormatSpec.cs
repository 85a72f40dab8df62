using Flotilla.NodeRuntime.Distribution;
using Flotilla.NodeRuntime.Images;
using Flotilla.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Xunit;

namespace Flotilla.Tests.Registry.Client;

/// <summary>Manifests a pull must refuse, served by a fake open registry.</summary>
public sealed class ManifestFormatSpec : IAsyncLifetime
{
    private WebApplication _app = null!;
    private readonly int _port = FreePort.Next();
    private readonly string _data = Path.Combine(Path.GetTempPath(), "flotilla-mf-" + Guid.NewGuid().ToString("N")[..8]);

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls($"http://127.0.0.1:{_port}");
        _app = builder.Build();
        _app.MapGet("/v2/", () => Results.Json(new { }));
        _app.MapGet("/v2/old/app/manifests/1", () => Results.Text(
            """{"schemaVersion":1,"name":"old/app","tag":"1","architecture":"amd64","fsLayers":[],"history":[]}""",
            "application/vnd.docker.distribution.manifest.v1+prettyjws"));
        _app.MapGet("/v2/art/app/manifests/1", () => Results.Text(
            """{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}""",
            MediaTypes.OciManifest));
        _app.MapGet("/v2/multi/app/manifests/1", () => Results.Text(
            """{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"platform":{"os":"linux","architecture":"riscv64"}}]}""",
            MediaTypes.OciIndex));
        await _app.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
        try { Directory.Delete(_data, recursive: true); }
        catch (IOException) { }
    }

    private async Task<RegistryException> ResolveFails(string name)
    {
        using var distribution = new ImageDistribution(new NodeImageStore(_data));
        return await Assert.ThrowsAsync<RegistryException>(() =>
            distribution.Puller.ResolveAsync(ImageReference.Parse($"127.0.0.1:{_port}/{name}:1"), null, new PlatformSpec("linux", "amd64")));
    }

    [Fact]
    public async Task Schema1_manifests_are_refused_with_a_clear_error() =>
        Assert.Contains("schema 1 is not supported", (await ResolveFails("old/app")).Message);

    [Fact]
    public async Task Artifacts_that_are_not_container_images_are_refused() =>
        Assert.Contains("not a container image", (await ResolveFails("art/app")).Message);

    [Fact]
    public async Task An_index_without_the_platform_says_so()
    {
        var error = await ResolveFails("multi/app");
        Assert.Equal(404, error.Status);
        Assert.Contains("no matching manifest for linux/amd64", error.Message);
    }
}
