using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace Flotilla.Cluster.Security;

/// <summary>Who a verified peer certificate says its holder is.</summary>
public sealed record ClusterPeer(ClusterRole Role, string Name, string Subject);

/// <summary>A peer certificate checked against the cluster CA: the peer, or why not.</summary>
public sealed record PeerCheck(ClusterPeer? Peer, string? Refusal)
{
    public bool Trusted => Peer is not null;
    public static PeerCheck Refused(string reason) => new(null, reason);
}

/// <summary>
/// This process's place in the cluster PKI: its own certificate (with key) and the CA every peer's certificate must
/// chain to. The one check for every cluster hop: Akka.Remote both ways, node HTTPS both ways.
/// </summary>
public sealed class ClusterTls(X509Certificate2 certificate, X509Certificate2 authority)
{
    public X509Certificate2 Certificate { get; } = certificate;
    public X509Certificate2 Authority { get; } = authority;

    public ClusterPeer Self { get; } = Describe(certificate)
        ?? throw new InvalidDataException($"the cluster certificate '{certificate.Subject}' names no role (OU=node or OU=gateway)");

    /// <summary>Does <paramref name="presented"/> chain to the cluster CA (and only to it), is it in date, and does it name a role?</summary>
    public PeerCheck Verify(X509Certificate? presented) => VerifyAgainst(Authority, presented);

    /// <summary>The check of <see cref="Verify"/> against any CA certificate (a joiner pinning the CA of its token).</summary>
    public static PeerCheck VerifyAgainst(X509Certificate2 authority, X509Certificate? presented)
    {
        if (presented is null) return PeerCheck.Refused("no certificate presented");
        using var peer = presented as X509Certificate2 is { } c2 ? X509CertificateLoader.LoadCertificate(c2.RawData) : X509CertificateLoader.LoadCertificate(presented.GetRawCertData());
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(authority);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.VerificationFlags = X509VerificationFlags.NoFlag;
        if (!chain.Build(peer))
        {
            var status = string.Join(", ", chain.ChainStatus.Select(s => s.Status.ToString()).Distinct());
            return PeerCheck.Refused($"certificate '{peer.Subject}' is not valid for this cluster's CA ({status})");
        }
        // CustomRootTrust already anchors at the CA; compare anyway, so a chain through the system store can never pass.
        var root = chain.ChainElements[^1].Certificate;
        if (!root.RawData.AsSpan().SequenceEqual(authority.RawData))
            return PeerCheck.Refused($"certificate '{peer.Subject}' chains to '{root.Subject}', not this cluster's CA");
        return Describe(peer) is { } described
            ? new PeerCheck(described, null)
            : PeerCheck.Refused($"certificate '{peer.Subject}' names no cluster role");
    }

    /// <summary>For SslStream callbacks: the policy errors are recomputed by <see cref="Verify"/>, never trusted as given.</summary>
    public bool Accepts(X509Certificate? presented, SslPolicyErrors _) => Verify(presented).Trusted;

    private static ClusterPeer? Describe(X509Certificate2 certificate)
    {
        var name = certificate.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
        string? ou = null;
        foreach (var rdn in certificate.SubjectName.EnumerateRelativeDistinguishedNames())
            if (rdn.GetSingleElementType().Value == "2.5.4.11") ou = rdn.GetSingleElementValue();
        return ClusterCa.ParseRole(ou) is { } role ? new ClusterPeer(role, name, certificate.Subject) : null;
    }

    /// <summary>
    /// This process's certificate and CA from PEM files; fails with the file that is wrong, and when the certificate
    /// does not chain to the CA (a process would otherwise start and be refused by every peer).
    /// </summary>
    public static ClusterTls Load(string certificatePath, string keyPath, string caPath)
    {
        var authority = ClusterCa.Load(caPath).Certificate;
        var certificate = ClusterPkiFiles.LoadIdentity(certificatePath, keyPath);
        var tls = new ClusterTls(certificate, authority);
        if (tls.Verify(certificate).Refusal is { } refusal) throw new InvalidDataException($"{certificatePath}: {refusal}");
        return tls;
    }
}
