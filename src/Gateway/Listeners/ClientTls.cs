using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;

namespace Flotilla.Gateway.Listeners;

/// <summary>
/// TLS of the TCP client listeners, with dockerd's flags: <c>--tlscert/--tlskey</c> is the server certificate of
/// every TCP client listener (Docker API, native API, registry); <c>--tlsverify</c> with <c>--tlscacert</c>
/// makes the Docker API require a client certificate that chains to that CA (dockerd's semantics).
/// </summary>
/// <param name="CertificateFile">PEM server certificate (its chain may follow it in the file).</param>
/// <param name="KeyFile">PEM private key of the certificate.</param>
/// <param name="CaFile">PEM CA that client certificates must chain to (with <paramref name="VerifyClients"/>).</param>
public sealed record ClientTls(string CertificateFile, string KeyFile, string? CaFile, bool VerifyClients)
{
    /// <summary>Loads the files now, so a bad path or key fails at start with a message naming it.</summary>
    public LoadedClientTls Load()
    {
        X509Certificate2 certificate;
        try
        {
            using var pem = X509Certificate2.CreateFromPemFile(CertificateFile, KeyFile);
            // Kestrel on Linux is happy with an ephemeral key, but exporting once gives a certificate that owns its key.
            certificate = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
        {
            throw new ArgumentException($"--tlscert/--tlskey: cannot load {CertificateFile} with {KeyFile}: {ex.Message}", ex);
        }
        X509Certificate2Collection? authorities = null;
        if (VerifyClients)
        {
            if (CaFile is null) throw new ArgumentException("--tlsverify needs --tlscacert: the CA that client certificates must chain to");
            authorities = [];
            try
            {
                authorities.ImportFromPemFile(CaFile);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
            {
                throw new ArgumentException($"--tlscacert: cannot load {CaFile}: {ex.Message}", ex);
            }
            if (authorities.Count == 0) throw new ArgumentException($"--tlscacert: {CaFile} holds no certificate");
        }
        return new LoadedClientTls(certificate, authorities);
    }
}

public sealed record LoadedClientTls(X509Certificate2 Certificate, X509Certificate2Collection? ClientAuthorities)
{
    /// <summary>Serves TLS on the listener; with <paramref name="verifyClients"/> (the Docker API under --tlsverify), requires a client certificate from the CA.</summary>
    public void Apply(ListenOptions listen, bool verifyClients)
    {
        var options = new HttpsConnectionAdapterOptions { ServerCertificate = Certificate };
        if (verifyClients && ClientAuthorities is { } authorities)
        {
            options.ClientCertificateMode = ClientCertificateMode.RequireCertificate;
            options.ClientCertificateValidation = (certificate, _, errors) =>
            {
                // Only the CA given counts, never the system's trust store (as dockerd's ClientCAs pool).
                if ((errors & SslPolicyErrors.RemoteCertificateNotAvailable) != 0) return false;
                using var chain = new X509Chain();
                chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                chain.ChainPolicy.CustomTrustStore.AddRange(authorities);
                chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                chain.ChainPolicy.ApplicationPolicy.Add(new System.Security.Cryptography.Oid("1.3.6.1.5.5.7.3.2")); // clientAuth
                return chain.Build(certificate);
            };
        }
        listen.UseHttps(options);
    }
}
