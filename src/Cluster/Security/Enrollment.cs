using System.Net.Http.Json;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace Flotilla.Cluster.Security;

/// <summary>
/// <c>FLT1-&lt;sha256 of the CA certificate, hex&gt;-&lt;secret, base64url&gt;</c>, as <c>docker swarm join --token</c>:
/// the fingerprint lets a joiner pin the CA before it trusts anything; the secret lets it prove it may join. The
/// secret never crosses the wire (the joiner sends an HMAC of its request under it).
/// </summary>
public sealed record JoinToken(string CaFingerprint, byte[] Secret)
{
    private const string Prefix = "FLT1-";

    public override string ToString() => $"{Prefix}{CaFingerprint}-{Base64Url(Secret)}";

    public static JoinToken Parse(string text)
    {
        var parts = text.Trim().Split('-', 3);
        if (parts.Length != 3 || parts[0] + "-" != Prefix || parts[1].Length != 64 || !parts[1].All(Uri.IsHexDigit))
            throw new FormatException("not a Flotilla join token (FLT1-<CA fingerprint>-<secret>)");
        var secret = Convert.FromBase64String(parts[2].Replace('-', '+').Replace('_', '/').PadRight((parts[2].Length + 3) / 4 * 4, '='));
        if (secret.Length < 16) throw new FormatException("the join token's secret is too short");
        return new JoinToken(parts[1].ToLowerInvariant(), secret);
    }

    /// <summary>The secret a CA holder keeps next to its key (<c>&lt;pki&gt;/join-secret</c>, 0600), made on first need.</summary>
    public static JoinToken ForCa(ClusterCa ca, string pkiDirectory)
    {
        var path = Path.Combine(pkiDirectory, Enrollment.SecretFile);
        if (!File.Exists(path)) PemFile.WritePrivate(path, Base64Url(RandomNumberGenerator.GetBytes(32)));
        var secret = Convert.FromBase64String(Pad(File.ReadAllText(path).Trim()));
        return new JoinToken(ca.Fingerprint, secret);
    }

    public byte[] Proof(EnrollmentRequest request) =>
        HMACSHA256.HashData(Secret, Encoding.UTF8.GetBytes($"{request.Role}\n{request.Name}\n{string.Join(',', request.Addresses)}\n{request.PublicKey}"));

    private static string Base64Url(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    private static string Pad(string base64Url) =>
        base64Url.Replace('-', '+').Replace('_', '/').PadRight((base64Url.Length + 3) / 4 * 4, '=');
}

/// <summary>What a joiner asks for: a certificate for its public key (SPKI, base64), proven with the token's secret.</summary>
public sealed record EnrollmentRequest(string Role, string Name, IReadOnlyList<string> Addresses, string PublicKey, string Proof = "");

/// <summary>The answer: the joiner's certificate and the CA (PEM).</summary>
public sealed record EnrollmentResponse(string Certificate, string Ca);

/// <summary>
/// Joining with a token: the joiner makes its key, sends its public key with an HMAC proof to a process that holds the
/// CA key (<c>POST /_flotilla/pki/v1/enroll</c> over HTTPS), and accepts the answer only if the CA in it has the
/// token's fingerprint and the server's own TLS certificate chains to that CA — a server that is not the cluster's
/// learns nothing (the proof does not reveal the secret) and gives nothing the joiner would use. The CA key stays on
/// the process that holds it.
/// </summary>
public static class Enrollment
{
    public const string Path = "/_flotilla/pki/v1/enroll";
    public const string SecretFile = "join-secret";
    public const int DefaultPort = 2378;

    /// <summary>The CA holder's side: the certificate, or why not.</summary>
    public static (EnrollmentResponse? Response, string? Refusal) Answer(ClusterCa ca, JoinToken token, EnrollmentRequest request)
    {
        byte[] proof;
        try
        {
            proof = Convert.FromBase64String(request.Proof);
        }
        catch (FormatException)
        {
            return (null, "malformed proof");
        }
        if (!CryptographicOperations.FixedTimeEquals(proof, token.Proof(request))) return (null, "the join token's proof does not match");
        if (ClusterCa.ParseRole(request.Role) is not { } role) return (null, $"unknown role '{request.Role}'");
        if (string.IsNullOrWhiteSpace(request.Name) || request.Name.Length > 200) return (null, "a name is required");
        PublicKey key;
        try
        {
            using var ecdsa = ECDsa.Create();
            ecdsa.ImportSubjectPublicKeyInfo(Convert.FromBase64String(request.PublicKey), out _);
            key = new PublicKey(ecdsa);
        }
        catch (Exception e) when (e is FormatException or CryptographicException)
        {
            return (null, "the public key is not an ECDSA SubjectPublicKeyInfo");
        }
        using var issued = ca.IssueFor(key, role, request.Name, request.Addresses);
        return (new EnrollmentResponse(issued.ExportCertificatePem(), ca.Certificate.ExportCertificatePem()), null);
    }

    /// <summary>The joiner's side: asks each endpoint in turn; the certificate with its new key and the pinned CA.</summary>
    public static async Task<ClusterTls> JoinAsync(JoinToken token, IEnumerable<Uri> endpoints, ClusterRole role, string name,
        IReadOnlyList<string> addresses, CancellationToken cancellationToken)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new EnrollmentRequest(ClusterCa.RoleName(role), name, addresses, Convert.ToBase64String(key.ExportSubjectPublicKeyInfo()));
        request = request with { Proof = Convert.ToBase64String(token.Proof(request)) };
        var failures = new List<string>();
        foreach (var endpoint in endpoints)
        {
            X509Certificate2? server = null;
            using var handler = new SocketsHttpHandler { UseProxy = false, ConnectTimeout = TimeSpan.FromSeconds(5) };
            handler.SslOptions = new SslClientAuthenticationOptions
            {
                // Pinned after the answer: the server's certificate must chain to the CA whose fingerprint the token holds.
                RemoteCertificateValidationCallback = (_, certificate, _, _) =>
                {
                    server = certificate is null ? null : X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
                    return certificate is not null;
                },
            };
            using var http = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(15) };
            try
            {
                using var response = await http.PostAsJsonAsync(new Uri(endpoint, Path), request, cancellationToken);
                if (!response.IsSuccessStatusCode)
                {
                    failures.Add($"{endpoint}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(cancellationToken)}");
                    continue;
                }
                var answer = await response.Content.ReadFromJsonAsync<EnrollmentResponse>(cancellationToken)
                             ?? throw new InvalidDataException("empty answer");
                using var ca = X509CertificateLoader.LoadCertificate(PemBytes(answer.Ca));
                if (Convert.ToHexStringLower(SHA256.HashData(ca.RawData)) != token.CaFingerprint)
                {
                    failures.Add($"{endpoint}: its CA is not the one the join token names");
                    continue;
                }
                if (ClusterTls.VerifyAgainst(ca, server).Refusal is { } refusal)
                {
                    failures.Add($"{endpoint}: the server is not a member of the cluster the token names ({refusal})");
                    continue;
                }
                using var certificate = X509CertificateLoader.LoadCertificate(PemBytes(answer.Certificate));
                using var withKey = certificate.CopyWithPrivateKey(key);
                var tls = new ClusterTls(ClusterPkiFiles.Reload(withKey), X509CertificateLoader.LoadCertificate(ca.RawData));
                if (tls.Verify(tls.Certificate).Refusal is { } own) throw new InvalidDataException($"{endpoint}: issued an invalid certificate ({own})");
                return tls;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or InvalidDataException or System.Text.Json.JsonException or CryptographicException)
            {
                failures.Add($"{endpoint}: {e.Message}");
            }
        }
        throw new InvalidOperationException("could not join with the token: " + string.Join("; ", failures));
    }

    private static byte[] PemBytes(string pem)
    {
        var fields = PemEncoding.Find(pem);
        return Convert.FromBase64String(pem[fields.Base64Data]);
    }
}
