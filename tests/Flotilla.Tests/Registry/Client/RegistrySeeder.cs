using System.Net;
using System.Net.Http.Headers;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Storage;
using Xunit;

namespace Flotilla.Tests.Registry.Client;

/// <summary>Puts content into a registry with plain HTTP (POST + monolithic PUT), independent of the code under test.</summary>
public sealed class RegistrySeeder(string registry)
{
    private readonly HttpClient _http = new() { BaseAddress = new Uri($"http://{registry}/"), Timeout = TimeSpan.FromSeconds(30) };

    public async Task<OciDescriptor> PushBlobAsync(string repository, byte[] blob, string mediaType)
    {
        var digest = Digest.Of(blob).ToString();
        using var start = await _http.PostAsync($"v2/{repository}/blobs/uploads/", null);
        Assert.Equal(HttpStatusCode.Accepted, start.StatusCode);
        var location = start.Headers.Location!.ToString();
        var separator = location.Contains('?') ? "&" : "?";
        using var put = new HttpRequestMessage(HttpMethod.Put, location + separator + "digest=" + Uri.EscapeDataString(digest))
        {
            Content = new ByteArrayContent(blob),
        };
        put.Content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        using var done = await _http.SendAsync(put);
        Assert.True(done.StatusCode == HttpStatusCode.Created, $"blob PUT: {(int)done.StatusCode} {await done.Content.ReadAsStringAsync()}");
        return new OciDescriptor { MediaType = mediaType, Digest = digest, Size = blob.Length };
    }

    public async Task<OciDescriptor> PutManifestAsync(string repository, string reference, byte[] manifest, string mediaType)
    {
        var content = new ByteArrayContent(manifest);
        content.Headers.ContentType = new MediaTypeHeaderValue(mediaType);
        using var response = await _http.PutAsync($"v2/{repository}/manifests/{reference}", content);
        Assert.True(response.StatusCode == HttpStatusCode.Created, $"manifest PUT: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        return new OciDescriptor { MediaType = mediaType, Digest = Digest.Of(manifest).ToString(), Size = manifest.Length };
    }

    /// <summary>An image of the given layers (as stored: compressed or not) and config; returns the manifest's descriptor.</summary>
    public async Task<OciDescriptor> PushImageAsync(string repository, string reference, byte[] config, IEnumerable<(byte[] Blob, string MediaType)> layers,
        string manifestType = MediaTypes.DockerManifest, string configType = MediaTypes.DockerConfig)
    {
        var configDescriptor = await PushBlobAsync(repository, config, configType);
        var layerDescriptors = new List<OciDescriptor>();
        foreach (var (blob, type) in layers) layerDescriptors.Add(await PushBlobAsync(repository, blob, type));
        var manifest = OciJson.Serialize(new OciManifest { MediaType = manifestType, Config = configDescriptor, Layers = layerDescriptors });
        return await PutManifestAsync(repository, reference, manifest, manifestType);
    }
}
