using System.Buffers.Text;
using System.Globalization;
using System.Net.Http.Json;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace Flotilla.Cluster.Security;

/// <summary>
/// <c>FLT2-&lt;sha256 of the CA certificate, hex&gt;-&lt;expiry, unix seconds&gt;-&lt;secret, base64url&gt;</c>, as
/// <c>docker swarm join --token</c> with <c>kubeadm token create --ttl</c>'s expiry: the fingerprint lets a joiner pin
/// the CA before it trusts anything; the secret lets it prove it may join. The secret is derived from the CA holder's
/// <see cref="JoinSecret"/> and the expiry, so the expiry cannot be changed without the proof failing, and rotating the
/// join secret revokes every token made before. The secret never crosses the wire (the joiner sends an HMAC of its
/// request under it).
/// </summary>
public sealed record JoinToken(string CaFingerprint, DateTimeOffset Expires, byte[] Secret)
{
    private const string Version = "FLT2";
    public static readonly TimeSpan DefaultTtl = TimeSpan.FromHours(24);

    public override string ToString() => $"{Version}-{CaFingerprint}-{Expires.ToUnixTimeSeconds()}-{Base64Url.EncodeToString(Secret)}";

    public static JoinToken Parse(string text)
    {
        var parts = text.Trim().Split('-', 4);
        if (parts[0] == "FLT1")
            throw new FormatException("a join token of an earlier Flotilla, which never expires and is no longer accepted: make a new one with 'flotilla cluster join-token'");
        if (parts.Length != 4 || parts[0] != Version || parts[1].Length != 64 || !parts[1].All(Uri.IsHexDigit)
            || !long.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out var expires) || expires > Enrollment.LatestExpiry)
            throw new FormatException("not a Flotilla join token (FLT2-<CA fingerprint>-<expiry>-<secret>)");
        var secret = Base64Url.DecodeFromChars(parts[3]);
        if (secret.Length < 16) throw new FormatException("the join token's secret is too short");
        return new JoinToken(parts[1].ToLowerInvariant(), DateTimeOffset.FromUnixTimeSeconds(expires), secret);
    }

    /// <summary>A token of the CA valid for <paramref name="ttl"/> from <paramref name="now"/> (to the second).</summary>
    public static JoinToken Issue(ClusterCa ca, JoinSecret secret, TimeSpan ttl, DateTimeOffset now)
    {
        if (ttl <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(ttl), "a join token's time to live must be positive");
        var expires = DateTimeOffset.FromUnixTimeSeconds((now + ttl).ToUnixTimeSeconds());
        return new JoinToken(ca.Fingerprint, expires, secret.TokenSecret(expires));
    }

    public byte[] Proof(EnrollmentRequest request) => Proof(Secret, request);

    internal static byte[] Proof(byte[] tokenSecret, EnrollmentRequest request) =>
        HMACSHA256.HashData(tokenSecret, Encoding.UTF8.GetBytes(
            $"{request.Role}\n{request.Name}\n{string.Join(',', request.Addresses)}\n{request.PublicKey}\n{request.Expires}"));
}

/// <summary>
/// The key join tokens are derived from, kept next to the CA key (<c>&lt;pki&gt;/join-secret</c>, 0600) and made on
/// first need. Read again for every enrollment, so <see cref="Rotate"/> (<c>flotilla cluster join-token --rotate</c>)
/// revokes all earlier tokens at once, on a running CA holder too.
/// </summary>
public sealed class JoinSecret
{
    private readonly byte[] _key;

    private JoinSecret(byte[] key) => _key = key;

    public static string PathIn(string directory) => System.IO.Path.Combine(directory, Enrollment.SecretFile);

    /// <summary>The secret in <paramref name="directory"/>, or null when there is none (no token can be good).</summary>
    public static JoinSecret? Load(string directory)
    {
        var path = PathIn(directory);
        return File.Exists(path) ? new JoinSecret(Base64Url.DecodeFromChars(File.ReadAllText(path).Trim())) : null;
    }

    public static JoinSecret LoadOrCreate(string directory) => Load(directory) ?? Rotate(directory);

    /// <summary>A new secret replaces the old one (renamed into place): every token made before no longer proves anything.</summary>
    public static JoinSecret Rotate(string directory)
    {
        var key = RandomNumberGenerator.GetBytes(32);
        PemFile.WritePrivate(PathIn(directory), Base64Url.EncodeToString(key));
        return new JoinSecret(key);
    }

    /// <summary>The secret of the token that expires at <paramref name="expires"/>.</summary>
    public byte[] TokenSecret(DateTimeOffset expires) =>
        HMACSHA256.HashData(_key, Encoding.UTF8.GetBytes($"flotilla join token\n{expires.ToUnixTimeSeconds()}"));
}

/// <summary>
/// What a joiner asks for: a certificate for its public key (SPKI, base64), proven with the secret of the token that
/// expires at <see cref="Expires"/> (unix seconds).
/// </summary>
public sealed record EnrollmentRequest(string Role, string Name, IReadOnlyList<string> Addresses, string PublicKey, long Expires = 0, string Proof = "");

/// <summary>The answer: the joiner's certificate and the CA (PEM).</summary>
public sealed record EnrollmentResponse(string Certificate, string Ca);

/// <summary>The CA holder's decision: the answer and the serial number of the certificate it holds, or why not.</summary>
public sealed record EnrollmentDecision(EnrollmentResponse? Response, string? Serial, DateTimeOffset? NotAfter, string? Refusal)
{
    public static EnrollmentDecision Refused(string reason) => new(null, null, null, reason);
}

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

    /// <summary>The last second <see cref="DateTimeOffset"/> holds (9999-12-31): later expiries are not tokens.</summary>
    internal const long LatestExpiry = 253402300799;

    /// <summary>
    /// The CA holder's side: the certificate, or why not. The proof is checked under the secret of a token that expires
    /// when the request says (derived from <paramref name="secret"/>), so a changed expiry, a token of an earlier
    /// secret (rotated) and a guess all fail alike; a genuine token past its expiry is refused as expired.
    /// </summary>
    public static EnrollmentDecision Answer(ClusterCa ca, JoinSecret? secret, EnrollmentRequest request, DateTimeOffset now)
    {
        if (request.Role is null || request.Name is null || request.Addresses is null || request.PublicKey is null || request.Proof is null
            || request.Expires is <= 0 or > LatestExpiry)
            return EnrollmentDecision.Refused("malformed request");
        if (secret is null) return EnrollmentDecision.Refused("this process has no join secret: no token is valid");
        byte[] proof;
        try
        {
            proof = Convert.FromBase64String(request.Proof);
        }
        catch (FormatException)
        {
            return EnrollmentDecision.Refused("malformed proof");
        }
        var expires = DateTimeOffset.FromUnixTimeSeconds(request.Expires);
        if (!CryptographicOperations.FixedTimeEquals(proof, JoinToken.Proof(secret.TokenSecret(expires), request)))
            return EnrollmentDecision.Refused("the join token's proof does not match (a wrong or revoked token)");
        if (expires <= now) return EnrollmentDecision.Refused($"the join token expired at {expires:u}");
        if (ClusterCa.ParseRole(request.Role) is not { } role) return EnrollmentDecision.Refused($"unknown role '{request.Role}'");
        if (string.IsNullOrWhiteSpace(request.Name) || request.Name.Length > 200) return EnrollmentDecision.Refused("a name is required");
        PublicKey key;
        try
        {
            using var ecdsa = ECDsa.Create();
            ecdsa.ImportSubjectPublicKeyInfo(Convert.FromBase64String(request.PublicKey), out _);
            key = new PublicKey(ecdsa);
        }
        catch (Exception e) when (e is FormatException or CryptographicException)
        {
            return EnrollmentDecision.Refused("the public key is not an ECDSA SubjectPublicKeyInfo");
        }
        using var issued = ca.IssueFor(key, role, request.Name, request.Addresses);
        return new EnrollmentDecision(new EnrollmentResponse(issued.ExportCertificatePem(), ca.Certificate.ExportCertificatePem()),
            issued.SerialNumber, issued.NotAfter.ToUniversalTime(), null);
    }

    /// <summary>The joiner's side: asks each endpoint in turn; the certificate with its new key and the pinned CA.</summary>
    public static async Task<ClusterTls> JoinAsync(JoinToken token, IEnumerable<Uri> endpoints, ClusterRole role, string name,
        IReadOnlyList<string> addresses, CancellationToken cancellationToken)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new EnrollmentRequest(ClusterCa.RoleName(role), name, addresses, Convert.ToBase64String(key.ExportSubjectPublicKeyInfo()),
            token.Expires.ToUnixTimeSeconds());
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
