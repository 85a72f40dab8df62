using System.Net;
using System.Security.Cryptography.X509Certificates;
using Akka.Actor;
using Flotilla.Cli.Hosting;
using Flotilla.Gateway.Listeners;
using Flotilla.NodeRuntime.Host;
using Flotilla.Tests.Infrastructure;
using Flotilla.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Flotilla.Tests.Gateway;

/// <summary>
/// The client listeners with a certificate (<c>--tlscert/--tlskey</c>, <c>--tlsverify --tlscacert</c>): the real
/// docker CLI needs a client certificate from the CA, the native API and registry answer over TLS; and listeners
/// on one port number at two addresses are told apart by listener, not by port.
/// </summary>
[Collection("postgres")]
public class TlsListenerSpec(PostgresFixture postgres) : IAsyncLifetime
{
    private readonly int _port = FreePort.Next();
    private readonly int _http = FreePort.Next();
    private readonly string _data = Path.Combine(Path.GetTempPath(), "flotilla-tls-" + Guid.NewGuid().ToString("N")[..8]);
    // Not <data>/pki: that is the cluster PKI the all-in-one process makes for itself.
    private string Pki => Path.Combine(_data, "client-tls");
    private WebApplication? _app;

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(Pki);
        await OpensslAsync("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", "/CN=flotilla test CA", "-keyout", P("ca.key"), "-out", P("ca.pem"));
        await IssueAsync("server", "subjectAltName=IP:127.0.0.1,IP:127.0.0.2,DNS:localhost\nextendedKeyUsage=serverAuth");
        await IssueAsync("client", "extendedKeyUsage=clientAuth");
        // A client certificate from another CA: must be refused.
        await OpensslAsync("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", "/CN=stranger", "-keyout", P("stranger.key"), "-out", P("stranger.pem"));

        var connectionString = await postgres.NewDatabaseAsync("tls");
        var facts = await HostFacts.ProbeAsync(null);
        // The registry shares the Docker API's port number on another loopback address.
        _app = AllInOneHost.Build(new UpSettings($"127.0.0.1:{_port}", $"127.0.0.2:{_port}", $"127.0.0.1:{_http}", _data, connectionString,
            "tls-node", null, Tls: new ClientTls(P("server.pem"), P("server.key"), P("ca.pem"), VerifyClients: true)), connectionString, facts);
        await _app.StartAsync();
        await AllInOneHost.WhenMemberUp(_app.Services.GetRequiredService<ActorSystem>()).WaitAsync(TimeSpan.FromSeconds(30));
    }

    public async Task DisposeAsync()
    {
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
        await DataRootCleanup.DeleteAsync(_data);
    }

    private string P(string name) => Path.Combine(Pki, name);

    private async Task OpensslAsync(params string[] args)
    {
        var result = await ProcessRunner.RunAsync("openssl", args);
        Assert.True(result.ExitCode == 0, result.ToString());
    }

    private async Task IssueAsync(string name, string extensions)
    {
        await File.WriteAllTextAsync(P(name + ".ext"), extensions + "\n");
        await OpensslAsync("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", $"/CN={name}",
            "-keyout", P(name + ".key"), "-out", P(name + ".csr"));
        await OpensslAsync("x509", "-req", "-in", P(name + ".csr"), "-CA", P("ca.pem"), "-CAkey", P("ca.key"), "-CAcreateserial",
            "-days", "2", "-extfile", P(name + ".ext"), "-out", P(name + ".pem"));
    }

    private Task<ProcessResult> DockerAsync(params string[] args) =>
        ProcessRunner.RunAsync("docker", ["-H", $"tcp://127.0.0.1:{_port}", .. args], TimeSpan.FromSeconds(60),
            new Dictionary<string, string> { ["DOCKER_CONFIG"] = Path.Combine(_data, "docker-config") });

    [Fact]
    public async Task The_docker_api_under_tlsverify_serves_only_clients_with_a_certificate_from_the_ca()
    {
        var verified = await DockerAsync("--tlsverify", "--tlscacert", P("ca.pem"), "--tlscert", P("client.pem"), "--tlskey", P("client.key"), "version");
        Assert.True(verified.ExitCode == 0, verified.ToString());
        Assert.Contains("Server: Flotilla", verified.Stdout);

        var plain = await DockerAsync("version");
        Assert.NotEqual(0, plain.ExitCode);
        Assert.DoesNotContain("Server: Flotilla", plain.Stdout);

        var noCertificate = await DockerAsync("--tlsverify", "--tlscacert", P("ca.pem"), "version");
        Assert.NotEqual(0, noCertificate.ExitCode);
        Assert.DoesNotContain("Server: Flotilla", noCertificate.Stdout);

        var stranger = await DockerAsync("--tlsverify", "--tlscacert", P("ca.pem"), "--tlscert", P("stranger.pem"), "--tlskey", P("stranger.key"), "version");
        Assert.NotEqual(0, stranger.ExitCode);
        Assert.DoesNotContain("Server: Flotilla", stranger.Stdout);
    }

    [Fact]
    public async Task The_native_api_and_the_registry_answer_over_tls_with_the_certificate()
    {
        var ca = X509CertificateLoader.LoadCertificateFromFile(P("ca.pem"));
        using var handler = new HttpClientHandler
        {
            ServerCertificateCustomValidationCallback = (_, certificate, _, _) =>
            {
                using var chain = new X509Chain();
                chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                chain.ChainPolicy.CustomTrustStore.Add(ca);
                chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                return certificate is not null && chain.Build(certificate);
            },
        };
        using var client = new HttpClient(handler);
        client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer",
            File.ReadAllText(NativeApiTokens.FileOf(_data, NativeRole.Admin)).Trim());
        using var nodes = await client.GetAsync($"https://127.0.0.1:{_http}/api/nodes");
        Assert.Equal(HttpStatusCode.OK, nodes.StatusCode);

        // Same port number as the Docker API, another address: the registry answers, not the Docker API.
        using var registry = await client.GetAsync($"https://127.0.0.2:{_port}/v2/");
        Assert.Equal("registry/2.0", registry.Headers.GetValues("Docker-Distribution-Api-Version").Single());

        // skopeo verifies the registry's certificate against the CA in --cert-dir, as docker's certs.d.
        var certs = Path.Combine(_data, "certs.d");
        Directory.CreateDirectory(certs);
        File.Copy(P("ca.pem"), Path.Combine(certs, "ca.crt"));
        var skopeo = await ProcessRunner.RunAsync("skopeo", ["list-tags", "--cert-dir", certs, $"docker://127.0.0.2:{_port}/nothing/here"]);
        Assert.DoesNotContain("certificate", skopeo.Stderr, StringComparison.OrdinalIgnoreCase);
        Assert.True(skopeo.Stderr.Contains("404"), skopeo.ToString()); // the registry answered, over verified TLS
    }

    [Fact]
    public async Task Docker_login_and_push_work_against_the_registry_over_tls()
    {
        string[] tls = ["--tlsverify", "--tlscacert", P("ca.pem"), "--tlscert", P("client.pem"), "--tlskey", P("client.key")];
        var rootfs = Path.Combine(_data, "rootfs.tar");
        await File.WriteAllBytesAsync(rootfs, BusyboxImage.Rootfs());
        var registry = $"127.0.0.2:{_port}";
        foreach (var args in new[]
                 {
                     new[] { "import", rootfs, "tlsbox:1" }, ["tag", "tlsbox:1", $"{registry}/tls/app:1"],
                     ["login", "-u", "anyone", "-p", "anything", registry], ["push", $"{registry}/tls/app:1"],
                 })
        {
            var result = await DockerAsync([.. tls, .. args]);
            Assert.True(result.ExitCode == 0, $"docker {string.Join(' ', args)}: {result}");
        }
        // A client that verifies the certificate sees what was pushed.
        var certs = Path.Combine(_data, "certs-push");
        Directory.CreateDirectory(certs);
        File.Copy(P("ca.pem"), Path.Combine(certs, "ca.crt"));
        var inspect = await ProcessRunner.RunAsync("skopeo", ["inspect", "--cert-dir", certs, $"docker://{registry}/tls/app:1"]);
        Assert.True(inspect.ExitCode == 0, inspect.ToString());
    }
}
