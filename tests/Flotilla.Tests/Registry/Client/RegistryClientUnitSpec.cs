using System.Text;
using Flotilla.Gateway.DockerApi;
using Flotilla.NodeRuntime.Distribution;
using Flotilla.NodeRuntime.Images;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Xunit;

namespace Flotilla.Tests.Registry.Client;

public class AuthChallengeSpec
{
    public static TheoryData<string, string> Headers => new()
    {
        { """Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull" """,
          "Bearer{realm=https://auth.docker.io/token;scope=repository:library/busybox:pull;service=registry.docker.io}" },
        { """Basic realm="Registry Realm" """, "Basic{realm=Registry Realm}" },
        { """bearer realm="https://a/t", service="s" """, "bearer{realm=https://a/t;service=s}" },
        { """Basic realm="x", Bearer realm="https://y/token",service="z" """, "Basic{realm=x}|Bearer{realm=https://y/token;service=z}" },
        { """Bearer realm="a\"b\\c" """, "Bearer{realm=a\"b\\c}" },
        { "Bearer realm=https://unquoted/token,service=svc", "Bearer{realm=https://unquoted/token;service=svc}" },
        { """Bearer REALM="upper",Scope="repository:a/b:pull,push" """, "Bearer{realm=upper;scope=repository:a/b:pull,push}" },
        { "Basic", "Basic{}" },
        { "Negotiate abc==", "Negotiate{}" },
        { """Bearer realm="unterminated""", "Bearer{realm=unterminated}" },
        { "", "" },
        { " , ,", "" },
        { "=\"\"", "" },
    };

    [Theory]
    [MemberData(nameof(Headers))]
    public void Parses_challenges(string header, string expected)
    {
        var shown = string.Join('|', AuthChallenge.Parse(header).Select(c =>
            c.Scheme + "{" + string.Join(';', c.Parameters.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}={p.Value}")) + "}"));
        Assert.Equal(expected, shown);
    }

    [Fact]
    public void Recognises_the_schemes_case_insensitively()
    {
        var challenges = AuthChallenge.Parse(["bearer realm=\"r\"", "BASIC realm=\"b\""]);
        Assert.True(challenges[0].IsBearer);
        Assert.True(challenges[1].IsBasic);
        Assert.Equal("r", challenges[0]["realm"]);
        Assert.Null(challenges[0]["service"]);
    }
}

public class RegistryAuthHeaderSpec
{
    private static string Encode(string json, bool pad = true)
    {
        var b64 = Convert.ToBase64String(Encoding.UTF8.GetBytes(json)).Replace('+', '-').Replace('/', '_');
        return pad ? b64 : b64.TrimEnd('=');
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("e30=")]
    [InlineData("e30")]
    [InlineData("bnVsbA==")] // null
    public void Empty_headers_mean_no_credentials(string? header) => Assert.Null(RegistryAuthHeader.Decode(header));

    [Fact]
    public void Decodes_user_password_and_server()
    {
        var c = RegistryAuthHeader.Decode(Encode("""{"username":"u","password":"p?>~","serveraddress":"127.0.0.1:5000"}"""))!;
        Assert.Equal(("u", "p?>~", "127.0.0.1:5000"), (c.Username, c.Password, c.ServerAddress));
        Assert.True(c.HasBasic);
        Assert.DoesNotContain("p?>~", c.ToString());
    }

    [Fact]
    public void Decodes_unpadded_input_the_auth_field_and_tokens()
    {
        var fromAuth = RegistryAuthHeader.Decode(Encode("""{"auth":"dXNlcjpwYTpzcw=="}""", pad: false))!; // user:pa:ss
        Assert.Equal(("user", "pa:ss"), (fromAuth.Username, fromAuth.Password));
        var token = RegistryAuthHeader.Decode(Encode("""{"identitytoken":"id","registrytoken":"rt"}"""))!;
        Assert.Equal(("id", "rt"), (token.IdentityToken, token.RegistryToken));
    }

    [Theory]
    [InlineData("!!!!")]
    [InlineData("e")]
    [InlineData("bm90IGpzb24=")] // "not json"
    [InlineData("WzFd")] // [1]
    [InlineData("eyJ1c2VybmFtZSI6MX0=")] // {"username":1}
    public void Malformed_headers_are_format_errors(string header) =>
        Assert.Throws<FormatException>(() => RegistryAuthHeader.Decode(header));
}

public class PlatformSelectorSpec
{
    private static OciDescriptor Entry(string arch, string? variant = null, string os = "linux") =>
        new() { Digest = $"{os}/{arch}/{variant}", Platform = new OciPlatform { Os = os, Architecture = arch, Variant = variant } };

    [Fact]
    public void Picks_os_and_architecture()
    {
        var list = new[] { Entry("arm64", "v8"), Entry("amd64"), Entry("amd64", os: "windows") };
        Assert.Equal("linux/amd64/", PlatformSelector.Select(list, new PlatformSpec("linux", "amd64"))!.Digest);
        Assert.Equal("linux/arm64/v8", PlatformSelector.Select(list, new PlatformSpec("linux", "arm64"))!.Digest);
        Assert.Null(PlatformSelector.Select(list, new PlatformSpec("linux", "s390x")));
    }

    [Fact]
    public void Prefers_the_asked_variant_then_none_then_any()
    {
        var list = new[] { Entry("arm", "v6"), Entry("arm", "v7"), Entry("amd64", "v3"), Entry("amd64", "v2") };
        Assert.Equal("linux/arm/v7", PlatformSelector.Select(list, new PlatformSpec("linux", "arm", "v7"))!.Digest);
        Assert.Equal("linux/amd64/v3", PlatformSelector.Select(list, new PlatformSpec("linux", "amd64"))!.Digest);
        Assert.Equal("linux/amd64/", PlatformSelector.Select([.. list, Entry("amd64")], new PlatformSpec("linux", "amd64"))!.Digest);
    }

    [Fact]
    public void Entries_without_platform_such_as_attestations_are_skipped()
    {
        var list = new[] { new OciDescriptor { Digest = "none" }, Entry("unknown", os: "unknown"), Entry("amd64") };
        Assert.Equal("linux/amd64/", PlatformSelector.Select(list, new PlatformSpec("linux", "amd64"))!.Digest);
    }

    [Theory]
    [InlineData("linux/amd64", "linux/amd64")]
    [InlineData("linux/x86_64", "linux/amd64")]
    [InlineData("Linux/ARM64/v8", "linux/arm64/v8")]
    public void Parses_dockers_platform_syntax(string text, string expected) => Assert.Equal(expected, PlatformSpec.Parse(text).ToString());

    [Theory]
    [InlineData("linux//amd64")]
    [InlineData("a/b/c/d")]
    public void Refuses_malformed_platforms(string text) => Assert.Throws<FormatException>(() => PlatformSpec.Parse(text));
}

public class RegistryAddressSpec
{
    [Theory]
    [InlineData("localhost", true)]
    [InlineData("localhost:5000", true)]
    [InlineData("127.0.0.1:5000", true)]
    [InlineData("127.1.2.3", true)]
    [InlineData("[::1]:5000", true)]
    [InlineData("::1", true)]
    [InlineData("10.0.0.1:5000", false)]
    [InlineData("registry-1.docker.io", false)]
    [InlineData("localhost.example.com", false)]
    public void Loopback_registries_may_use_plain_http(string host, bool loopback) => Assert.Equal(loopback, RegistryClient.IsLoopback(host));

    [Theory]
    [InlineData("https://index.docker.io/v1/", "docker.io")]
    [InlineData("", "docker.io")]
    [InlineData("127.0.0.1:5000", "127.0.0.1:5000")]
    [InlineData("http://LocalHost:5000/", "localhost:5000")]
    public void Login_server_addresses_become_domains(string address, string domain) =>
        Assert.Equal(domain, DistributionEndpoints.RegistryDomain(address));

    [Theory]
    [InlineData("busybox", "docker.io", "busybox")]
    [InlineData("library/busybox", "docker.io", "library/busybox")]
    [InlineData("127.0.0.1:5000/bus", "127.0.0.1:5000", "bus")]
    [InlineData("localhost/a/b", "localhost", "a/b")]
    [InlineData("registry.example.com/x", "registry.example.com", "x")]
    public void Search_terms_split_into_index_and_query(string term, string domain, string remote) =>
        Assert.Equal((domain, remote), DistributionEndpoints.SplitSearchTerm(term));

    [Fact]
    public void Docker_hub_is_served_from_registry_1() =>
        Assert.Equal("registry-1.docker.io", RegistryClient.RegistryHost(ImageReference.DefaultDomain));
}

/// <summary>dockerd's <c>--insecure-registry</c> rule: which registries may be reached over http or unverified TLS.</summary>
public class InsecureRegistriesSpec
{
    private static readonly InsecureRegistries Listed =
        InsecureRegistries.Parse(["registry.example", "Mirror.Example:5000,10.20.0.0/16", "[fd00::1]:5000"]);

    [Theory]
    // Loopback, always.
    [InlineData("localhost", true)]
    [InlineData("localhost:5000", true)]
    [InlineData("127.0.0.1:5000", true)]
    [InlineData("[::1]:5000", true)]
    // A listed host is matched exactly, port included (dockerd's IndexConfigs lookup).
    [InlineData("registry.example", true)]
    [InlineData("registry.example:5000", false)]
    [InlineData("mirror.example:5000", true)]
    [InlineData("MIRROR.example:5000", true)]
    [InlineData("mirror.example", false)]
    [InlineData("mirror.example:5001", false)]
    [InlineData("[fd00::1]:5000", true)]
    // A listed CIDR covers IP-addressed registries, any port.
    [InlineData("10.20.3.4:5000", true)]
    [InlineData("10.20.3.4", true)]
    [InlineData("10.21.0.1:5000", false)]
    // Unlisted.
    [InlineData("registry-1.docker.io", false)]
    [InlineData("other.example:5000", false)]
    [InlineData("localhost.example.com", false)]
    public void Listed_hosts_and_networks_and_loopback_are_insecure(string registry, bool insecure) =>
        Assert.Equal(insecure, Listed.Allows(registry));

    [Fact]
    public void Without_flags_only_loopback_is_insecure()
    {
        Assert.True(InsecureRegistries.None.Allows("127.0.0.1:5000"));
        Assert.False(InsecureRegistries.None.Allows("registry.example"));
        Assert.False(InsecureRegistries.None.Allows("10.20.3.4:5000"));
    }

    [Theory]
    [InlineData("http://registry.example:5000")]
    [InlineData("registry.example:99999")]
    [InlineData("registry.example:port")]
    [InlineData("bad_host:5000")]
    [InlineData("10.0.0.0/99")]
    [InlineData("[not-an-ip]:5000")]
    [InlineData("-leading.example")]
    public void Malformed_entries_are_refused(string entry) =>
        Assert.Throws<FormatException>(() => InsecureRegistries.Parse([entry]));

    [Fact]
    public void Docker_info_lists_them_as_dockerd_does()
    {
        var config = Listed.Describe();

        Assert.Equal(["::1/128", "127.0.0.0/8", "10.20.0.0/16"], config.InsecureRegistryCIDRs);
        Assert.True(config.IndexConfigs["docker.io"] is { Secure: true, Official: true });
        Assert.True(config.IndexConfigs["mirror.example:5000"] is { Secure: false, Official: false, Name: "mirror.example:5000" });
        Assert.Equal(["[fd00::1]:5000", "docker.io", "mirror.example:5000", "registry.example"], config.IndexConfigs.Keys);
    }
}

/// <summary>The <c>Link</c> header of a paginated tags list or catalog: the next page, on the same registry only.</summary>
public class TagsListLinkSpec
{
    private static readonly Uri Base = new("http://127.0.0.1:5000/");

    [Theory]
    [InlineData("</v2/x/tags/list?n=2&last=b>; rel=\"next\"", "http://127.0.0.1:5000/v2/x/tags/list?n=2&last=b")]
    [InlineData("<http://127.0.0.1:5000/v2/x/tags/list?last=b>; rel=next", "http://127.0.0.1:5000/v2/x/tags/list?last=b")]
    [InlineData("</v2/x/tags/list?last=a>; rel=\"prev\", </v2/x/tags/list?last=c>; rel=\"next\"", "http://127.0.0.1:5000/v2/x/tags/list?last=c")]
    [InlineData("</v2/x/tags/list?last=a>; title=\"t\" ; REL=\"next\"", "http://127.0.0.1:5000/v2/x/tags/list?last=a")]
    [InlineData("</v2/x/tags/list?last=a>; rel=\"prev\"", null)]
    [InlineData("", null)]
    public void Finds_the_next_page(string header, string? expected) =>
        Assert.Equal(expected, RegistrySession.NextPage([header], Base)?.ToString());

    [Theory]
    [InlineData("<https://127.0.0.1:5000/v2/x/tags/list?last=b>; rel=\"next\"")]
    [InlineData("<http://evil.example/v2/x/tags/list?last=b>; rel=\"next\"")]
    [InlineData("<http://127.0.0.1:5001/v2/x/tags/list>; rel=\"next\"")]
    [InlineData("</v2/x/tags/list?last=b; rel=\"next\"")]
    public void Refuses_a_next_page_elsewhere_or_malformed(string header) =>
        Assert.Throws<RegistryException>(() => RegistrySession.NextPage([header], Base));
}

/// <summary>An insecure registry's https is used without certificate checks (dockerd's InsecureSkipVerify).</summary>
public class InsecureRegistryTlsSpec
{
    [Fact]
    public async Task A_loopback_registry_with_a_self_signed_certificate_is_reached_over_https()
    {
        using var key = System.Security.Cryptography.RSA.Create(2048);
        var request = new System.Security.Cryptography.X509Certificates.CertificateRequest("CN=flotilla-test", key,
            System.Security.Cryptography.HashAlgorithmName.SHA256, System.Security.Cryptography.RSASignaturePadding.Pkcs1);
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(1));
        var port = Support.FreePort.Next();
        var builder = Microsoft.AspNetCore.Builder.WebApplication.CreateSlimBuilder();
        builder.WebHost.ConfigureKestrel(k => k.Listen(System.Net.IPAddress.Loopback, port, l => l.UseHttps(certificate)));
        await using var app = builder.Build();
        app.MapGet("/v2/", () => Microsoft.AspNetCore.Http.Results.Json(new { }));
        await app.StartAsync();
        try
        {
            using var client = new RegistryClient();
            var session = await client.OpenAsync($"127.0.0.1:{port}", null);
            Assert.Equal($"https://127.0.0.1:{port}/", session.BaseUri.ToString());
        }
        finally
        {
            await app.StopAsync();
        }
    }
}
