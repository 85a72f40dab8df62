using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Flotilla.Cluster.Security;

/// <summary>What a cluster certificate lets its holder be: the role sits in the subject's OU.</summary>
public enum ClusterRole
{
    Node,
    Gateway,
}

/// <summary>
/// The cluster's certificate authority: one self-signed ECDSA P-256 certificate. Its key signs the certificates of
/// nodes and gateways; every hop between cluster processes (Akka.Remote, node HTTPS) requires a peer certificate that
/// chains to it. Built with <see cref="CertificateRequest"/>, no hand-made ASN.1.
/// </summary>
public sealed class ClusterCa : IDisposable
{
    private const string Organization = "flotilla";

    public X509Certificate2 Certificate { get; }
    private readonly ECDsa? _key;

    private ClusterCa(X509Certificate2 certificate, ECDsa? key)
    {
        Certificate = certificate;
        _key = key;
    }

    public bool CanIssue => _key is not null;

    /// <summary>SHA-256 of the CA certificate (hex, lower case): what an operator compares, and what a joiner pins.</summary>
    public string Fingerprint => Convert.ToHexStringLower(SHA256.HashData(Certificate.RawData));

    public static ClusterCa Create(string name = "flotilla cluster CA", TimeSpan? lifetime = null)
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName($"CN={Escape(name)}, O={Organization}"), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(certificateAuthority: true, hasPathLengthConstraint: true, pathLengthConstraint: 0, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, critical: true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        var now = DateTimeOffset.UtcNow;
        using var certificate = request.CreateSelfSigned(now.AddMinutes(-5), now + (lifetime ?? TimeSpan.FromDays(3650)));
        return new ClusterCa(X509CertificateLoader.LoadCertificate(certificate.RawData), key);
    }

    /// <summary>The CA from PEM files; without a key it can only verify, not issue.</summary>
    public static ClusterCa Load(string certificatePath, string? keyPath = null)
    {
        var certificate = X509CertificateLoader.LoadCertificate(PemFile.ReadCertificate(certificatePath));
        if (!IsAuthority(certificate))
            throw new InvalidDataException($"{certificatePath}: not a CA certificate (basic constraints CA:TRUE and keyCertSign required)");
        ECDsa? key = null;
        if (keyPath is not null)
        {
            key = ECDsa.Create();
            key.ImportFromPem(File.ReadAllText(keyPath));
            using var check = certificate.CopyWithPrivateKey(key);
        }
        return new ClusterCa(certificate, key);
    }

    /// <summary>Writes <c>ca.pem</c> (0644) and, when this CA holds its key, <c>ca-key.pem</c> (0600).</summary>
    public void Save(string directory)
    {
        PemFile.WriteCertificate(Path.Combine(directory, ClusterPkiFiles.CaCertificate), Certificate);
        if (_key is not null) PemFile.WritePrivate(Path.Combine(directory, ClusterPkiFiles.CaKey), _key.ExportPkcs8PrivateKeyPem());
    }

    /// <summary>
    /// A certificate for one cluster process: CN = its name, OU = its role, SAN = its addresses (IP or DNS), usable as
    /// TLS server and client (every cluster hop is mutual).
    /// </summary>
    public X509Certificate2 Issue(ClusterRole role, string name, IEnumerable<string> subjectAlternativeNames, TimeSpan? lifetime = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var signed = IssueFor(new PublicKey(key), role, name, subjectAlternativeNames, lifetime);
        using var withKey = signed.CopyWithPrivateKey(key);
        return ClusterPkiFiles.Reload(withKey);
    }

    /// <summary>A certificate for a key this CA never sees (a joiner's; see <see cref="Enrollment"/>), without private key.</summary>
    public X509Certificate2 IssueFor(PublicKey publicKey, ClusterRole role, string name, IEnumerable<string> subjectAlternativeNames, TimeSpan? lifetime = null)
    {
        if (_key is null) throw new InvalidOperationException("this cluster CA has no private key here, so it cannot issue certificates");
        var request = new CertificateRequest(
            new X500DistinguishedName($"CN={Escape(name)}, OU={RoleName(role)}, O={Organization}"), publicKey, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, critical: true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], critical: false));
        var san = new SubjectAlternativeNameBuilder();
        var any = false;
        foreach (var entry in subjectAlternativeNames.Where(s => !string.IsNullOrWhiteSpace(s)).Distinct(StringComparer.OrdinalIgnoreCase))
        {
            if (IPAddress.TryParse(entry, out var ip)) san.AddIpAddress(ip);
            else san.AddDnsName(entry);
            any = true;
        }
        if (any) request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Certificate, includeKeyIdentifier: true, includeIssuerAndSerial: false));

        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7F;
        var now = DateTimeOffset.UtcNow;
        var notAfter = now + (lifetime ?? TimeSpan.FromDays(825));
        if (notAfter > Certificate.NotAfter) notAfter = Certificate.NotAfter;
        using var issuerWithKey = Certificate.CopyWithPrivateKey(_key);
        return request.Create(issuerWithKey, now.AddMinutes(-5), notAfter, serial);
    }

    public static string RoleName(ClusterRole role) => role switch
    {
        ClusterRole.Node => "node",
        ClusterRole.Gateway => "gateway",
        _ => throw new ArgumentOutOfRangeException(nameof(role)),
    };

    public static ClusterRole? ParseRole(string? text) => text switch
    {
        "node" => ClusterRole.Node,
        "gateway" => ClusterRole.Gateway,
        _ => null,
    };

    private static bool IsAuthority(X509Certificate2 certificate) =>
        certificate.Extensions.OfType<X509BasicConstraintsExtension>().Any(b => b.CertificateAuthority)
        && certificate.Extensions.OfType<X509KeyUsageExtension>().All(k => k.KeyUsages.HasFlag(X509KeyUsageFlags.KeyCertSign));

    private static string Escape(string value) =>
        value.Any(c => c is ',' or '+' or '"' or '\\' or '<' or '>' or ';' or '=') ? "\"" + value.Replace("\"", "\\\"") + "\"" : value;

    public void Dispose()
    {
        Certificate.Dispose();
        _key?.Dispose();
    }
}

/// <summary>File names under a process's <c>&lt;data&gt;/pki</c> directory.</summary>
public static class ClusterPkiFiles
{
    public const string Directory = "pki";
    public const string CaCertificate = "ca.pem";
    public const string CaKey = "ca-key.pem";
    public const string Certificate = "cert.pem";
    public const string Key = "key.pem";

    public static string In(string dataRoot) => Path.Combine(dataRoot, Directory);

    /// <summary>
    /// A certificate with its key in a form SslStream accepts on every platform (an ephemeral key is refused by
    /// some TLS back ends): a PKCS#12 round trip.
    /// </summary>
    public static X509Certificate2 Reload(X509Certificate2 withKey) =>
        X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null, X509KeyStorageFlags.Exportable);

    /// <summary>Writes <c>cert.pem</c> (0644) and <c>key.pem</c> (0600).</summary>
    public static void SaveIdentity(string directory, X509Certificate2 certificate)
    {
        PemFile.WriteCertificate(Path.Combine(directory, Certificate), certificate);
        using var key = certificate.GetECDsaPrivateKey() ?? throw new InvalidOperationException("the certificate has no ECDSA private key");
        PemFile.WritePrivate(Path.Combine(directory, Key), key.ExportPkcs8PrivateKeyPem());
    }

    public static X509Certificate2 LoadIdentity(string certificatePath, string keyPath)
    {
        using var loaded = X509Certificate2.CreateFromPemFile(certificatePath, keyPath);
        return Reload(loaded);
    }
}

internal static class PemFile
{
    public static byte[] ReadCertificate(string path)
    {
        var text = File.ReadAllText(path);
        var fields = PemEncoding.Find(text);
        if (text[fields.Label] != "CERTIFICATE") throw new InvalidDataException($"{path}: no PEM CERTIFICATE");
        return Convert.FromBase64String(text[fields.Base64Data]);
    }

    public static void WriteCertificate(string path, X509Certificate2 certificate) =>
        Write(path, certificate.ExportCertificatePem() + "\n", UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);

    public static void WritePrivate(string path, string pem) => Write(path, pem + "\n", UnixFileMode.UserRead | UnixFileMode.UserWrite);

    /// <summary>Created with its final mode (a key is never readable by others, not even for a moment), then renamed into place.</summary>
    private static void Write(string path, string text, UnixFileMode mode)
    {
        if (!OperatingSystem.IsLinux()) throw new PlatformNotSupportedException("cluster PKI files need Linux file modes");
        System.IO.Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!,
            UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var temp = path + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        using (var stream = new FileStream(temp, new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.Write,
            UnixCreateMode = mode,
        }))
        using (var writer = new StreamWriter(stream))
        {
            writer.Write(text);
        }
        File.Move(temp, path, overwrite: true);
    }
}
