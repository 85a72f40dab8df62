using System.Net;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Flotilla.Cluster.Security;
using Flotilla.NodeRuntime.Distribution;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Storage;
using Flotilla.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Flotilla.Tests.Registry.Client;

/// <summary>
/// The engine's registry client reads dockerd's <c>/etc/docker/certs.d/&lt;host:port&gt;/</c> (here a temp directory):
/// against Debian's <c>docker-registry</c> serving HTTPS with a private CA and requiring client certificates, a pull
/// fails without the CA file, fails with it but without <c>client.cert</c>/<c>client.key</c>, and works with both.
/// The registry is named by this host's name (resolving to loopback), since loopback addresses are insecure registries
/// whose certificates are never checked. Before, only the system trust store was used.
/// </summary>
public sealed class RegistryCertsDirectorySpec(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "flotilla-certsd-" + Guid.NewGuid().ToString("N")[..8]);

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
        return Task.CompletedTask;
    }

    private static async Task WritePemAsync(string path, X509Certificate2 certificate, bool withKey)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        await File.WriteAllTextAsync(path, certificate.ExportCertificatePem() + "\n");
        if (withKey)
            await File.WriteAllTextAsync(Path.ChangeExtension(path, ".key"), certificate.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem() + "\n");
    }

    [Fact]
    public async Task A_pull_from_a_registry_of_a_private_CA_needs_its_certs_d_files()
    {
        var hostName = Dns.GetHostName();
        Assert.True((await Dns.GetHostAddressesAsync(hostName)).Any(IPAddress.IsLoopback), $"this test needs {hostName} to resolve to loopback");

        using var ca = ClusterCa.Create("a private registry CA");
        var serverCert = Path.Combine(_root, "server", "server.crt");
        await WritePemAsync(serverCert, ca.Issue(ClusterRole.Node, "registry", [hostName]), withKey: true);
        var caFile = Path.Combine(_root, "server", "ca.pem");
        await File.WriteAllTextAsync(caFile, ca.Certificate.ExportCertificatePem() + "\n");
        await using var process = await DistributionProcess.StartAsync(tls: new DistributionProcess.Tls(serverCert, Path.ChangeExtension(serverCert, ".key"), caFile));

        var registry = $"{hostName}:{process.Port}";
        var certsD = Path.Combine(_root, "certs.d");
        Directory.CreateDirectory(certsD);
        var options = new RegistryClientOptions { CertsDirectory = certsD };

        async Task<string> TryPullAsync(string reference)
        {
            using var client = new RegistryClient(options);
            try
            {
                var session = await client.OpenAsync(registry, null);
                var manifest = await session.GetManifestAsync("certs/probe", reference);
                return "pulled " + manifest.Digest;
            }
            catch (Exception e)
            {
                return $"failed: {e.GetType().Name}: {e.Message} {e.InnerException?.Message}";
            }
        }

        var noFiles = await TryPullAsync("1");
        output.WriteLine("no certs.d entry: " + noFiles);
        Assert.StartsWith("failed", noFiles);

        Directory.CreateDirectory(Path.Combine(certsD, registry));
        await File.WriteAllTextAsync(Path.Combine(certsD, registry, "ca.crt"), ca.Certificate.ExportCertificatePem() + "\n");
        var caOnly = await TryPullAsync("1");
        output.WriteLine("ca.crt only: " + caOnly);
        Assert.StartsWith("failed", caOnly);

        await WritePemAsync(Path.Combine(certsD, registry, "client.cert"), ca.Issue(ClusterRole.Gateway, "flotilla-engine", []), withKey: true);
        // Push an image with the files in place, then pull it with a fresh client.
        using (var client = new RegistryClient(options))
        {
            var session = await client.OpenAsync(registry, null);
            var config = Encoding.UTF8.GetBytes("""{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}""");
            var configDigest = Digest.Of(config);
            await session.UploadBlobAsync("certs/probe", configDigest, config.Length, () => new MemoryStream(config), null);
            var manifest = Encoding.UTF8.GetBytes($$"""
                {"schemaVersion":2,"mediaType":"{{MediaTypes.DockerManifest}}","config":{"mediaType":"{{MediaTypes.DockerConfig}}","size":{{config.Length}},"digest":"{{configDigest}}"},"layers":[]}
                """);
            await session.PutManifestAsync("certs/probe", "1", MediaTypes.DockerManifest, manifest);
        }
        var both = await TryPullAsync("1");
        output.WriteLine("ca.crt and client.cert/key: " + both);
        Assert.StartsWith("pulled sha256:", both);

        // dockerd refuses a client certificate without its key; so does the client (rather than pull without it).
        File.Delete(Path.Combine(certsD, registry, "client.key"));
        Assert.Contains("missing key client.key", await TryPullAsync("1"));
    }
}
