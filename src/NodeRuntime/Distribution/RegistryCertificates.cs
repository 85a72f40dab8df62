using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace Flotilla.NodeRuntime.Distribution;

/// <summary>
/// A registry's TLS files in dockerd's layout (<c>/etc/docker/certs.d/&lt;host[:port]&gt;/</c>): every <c>*.crt</c> is a
/// CA trusted for that registry in addition to the system's; every <c>*.cert</c> with its <c>*.key</c> is a client
/// certificate offered to it. A <c>*.cert</c> without its key (or the reverse) is an error, as in dockerd.
/// </summary>
public sealed class RegistryCertificates
{
    public const string DefaultDirectory = "/etc/docker/certs.d";

    private RegistryCertificates(X509Certificate2Collection authorities, X509Certificate2Collection clientCertificates)
    {
        Authorities = authorities;
        ClientCertificates = clientCertificates;
    }

    public X509Certificate2Collection Authorities { get; }
    public X509Certificate2Collection ClientCertificates { get; }

    /// <summary>The files for <paramref name="registry"/> (<c>host[:port]</c>), or null when it has no directory.</summary>
    public static RegistryCertificates? Load(string certsDirectory, string registry)
    {
        // A registry name is a host and a port: nothing that climbs out of the directory.
        if (registry.Contains('/') || registry.Contains("..", StringComparison.Ordinal)) return null;
        var directory = Path.Combine(certsDirectory, registry);
        if (!Directory.Exists(directory)) return null;
        var authorities = new X509Certificate2Collection();
        var clients = new X509Certificate2Collection();
        foreach (var file in Directory.EnumerateFiles(directory).Order(StringComparer.Ordinal))
        {
            switch (Path.GetExtension(file))
            {
                case ".crt":
                    authorities.ImportFromPemFile(file);
                    break;
                case ".cert":
                    var key = Path.ChangeExtension(file, ".key");
                    if (!File.Exists(key)) throw new InvalidOperationException($"missing key {Path.GetFileName(key)} for client certificate {file}");
                    clients.Add(Reload(X509Certificate2.CreateFromPemFile(file, key)));
                    break;
                case ".key":
                    if (!File.Exists(Path.ChangeExtension(file, ".cert")))
                        throw new InvalidOperationException($"missing client certificate {Path.GetFileNameWithoutExtension(file)}.cert for key {file}");
                    break;
            }
        }
        return new RegistryCertificates(authorities, clients);
    }

    /// <summary>Checks the server against the system's roots, and where that fails for the chain alone, against these CAs.</summary>
    public void Configure(SslClientAuthenticationOptions ssl)
    {
        if (ClientCertificates.Count > 0) ssl.ClientCertificates = ClientCertificates;
        if (Authorities.Count == 0) return;
        ssl.RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
        {
            if (errors == SslPolicyErrors.None) return true;
            if (errors != SslPolicyErrors.RemoteCertificateChainErrors || certificate is null) return false;
            using var chain = new X509Chain();
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.AddRange(Authorities);
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            using var leaf = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
            return chain.Build(leaf);
        };
    }

    // A PEM key is ephemeral; TLS client authentication on Linux needs the certificate loaded with its key as PKCS#12.
    private static X509Certificate2 Reload(X509Certificate2 withKey)
    {
        using (withKey) return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
    }
}
