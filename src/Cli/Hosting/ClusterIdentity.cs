using System.Security.Cryptography.X509Certificates;
using Flotilla.Cluster.Security;

namespace Flotilla.Cli.Hosting;

/// <summary>Where a process's cluster certificates come from (<c>--tls-*</c>, <c>--cluster-ca-*</c>).</summary>
public sealed record ClusterPkiFlags(string? TlsCert = null, string? TlsKey = null, string? TlsCa = null,
    string? CaCert = null, string? CaKey = null, string? JoinToken = null);

/// <summary>
/// Finds or makes this process's cluster certificate, in this order:
/// 1. <c>--tls-cert/--tls-key/--tls-ca</c> as given;
/// 2. <c>&lt;data&gt;/pki/{cert,key,ca}.pem</c> from an earlier start or put there by the operator
///    (<c>flotilla cluster cert issue</c>);
/// 3. a certificate issued here by a CA whose key this process holds: <c>--cluster-ca-cert/--cluster-ca-key</c>, or
///    <c>&lt;data&gt;/pki/ca{,-key}.pem</c>; a founding process (no <c>--join</c>, and <c>flotilla up</c> always)
///    makes that CA on its first start.
/// A joining process with none of these is refused: it would be refused by every member anyway.
/// </summary>
public static class ClusterIdentity
{
    /// <summary>
    /// As <see cref="Resolve"/>, and a joiner without a certificate that has a join token (<c>--join-token</c>) gets one
    /// from a seed that holds the CA key (its enrollment listener, <c>https://SEED-IP:2378</c>), saved to
    /// <c>&lt;data&gt;/pki</c> for the next start.
    /// </summary>
    public static async Task<ClusterTls> ResolveAsync(string dataRoot, ClusterRole role, string name, IReadOnlyList<string> addresses, bool founding,
        ClusterPkiFlags flags, IEnumerable<Uri> enrollAt, Action<string>? say, CancellationToken cancellationToken)
    {
        var pki = ClusterPkiFiles.In(dataRoot);
        var haveOwn = File.Exists(Path.Combine(pki, ClusterPkiFiles.Certificate)) || File.Exists(Path.Combine(pki, ClusterPkiFiles.CaKey));
        if (flags.JoinToken is null || haveOwn || flags.TlsCert is not null || flags.CaCert is not null)
            return Resolve(dataRoot, role, name, addresses, founding, flags, say);
        var token = JoinToken.Parse(flags.JoinToken);
        var tls = await Enrollment.JoinAsync(token, enrollAt, role, name, addresses, cancellationToken);
        ClusterPkiFiles.SaveIdentity(pki, tls.Certificate);
        File.WriteAllText(Path.Combine(pki, ClusterPkiFiles.CaCertificate), tls.Authority.ExportCertificatePem() + "\n");
        say?.Invoke($"joined with the token: {tls.Certificate.Subject}, CA sha256 {token.CaFingerprint}");
        return tls;
    }

    /// <summary>The CA this process holds the key of (<c>--cluster-ca-*</c> or <c>&lt;data&gt;/pki/ca-key.pem</c>), or null.</summary>
    public static ClusterCa? HeldCa(string dataRoot, ClusterPkiFlags flags)
    {
        if (flags.CaCert is not null && flags.CaKey is not null) return ClusterCa.Load(flags.CaCert, flags.CaKey);
        var pki = ClusterPkiFiles.In(dataRoot);
        var key = Path.Combine(pki, ClusterPkiFiles.CaKey);
        return File.Exists(key) ? ClusterCa.Load(Path.Combine(pki, ClusterPkiFiles.CaCertificate), key) : null;
    }

    public static ClusterTls Resolve(string dataRoot, ClusterRole role, string name, IEnumerable<string> addresses, bool founding,
        ClusterPkiFlags flags, Action<string>? say = null)
    {
        var pki = ClusterPkiFiles.In(dataRoot);
        if (flags.TlsCert is not null || flags.TlsKey is not null || flags.TlsCa is not null)
        {
            if (flags.TlsCert is null || flags.TlsKey is null || flags.TlsCa is null)
                throw new ArgumentException("--tls-cert, --tls-key and --tls-ca go together");
            return Checked(ClusterTls.Load(flags.TlsCert, flags.TlsKey, flags.TlsCa), role);
        }
        if ((flags.CaCert is null) != (flags.CaKey is null)) throw new ArgumentException("--cluster-ca-cert and --cluster-ca-key go together");

        string Pki(string file) => Path.Combine(pki, file);
        var haveOwn = File.Exists(Pki(ClusterPkiFiles.Certificate)) && File.Exists(Pki(ClusterPkiFiles.Key)) && File.Exists(Pki(ClusterPkiFiles.CaCertificate));
        if (haveOwn && flags.CaCert is null)
            return Checked(ClusterTls.Load(Pki(ClusterPkiFiles.Certificate), Pki(ClusterPkiFiles.Key), Pki(ClusterPkiFiles.CaCertificate)), role);

        using var ca = flags.CaCert is not null
            ? ClusterCa.Load(flags.CaCert, flags.CaKey)
            : File.Exists(Pki(ClusterPkiFiles.CaKey))
                ? ClusterCa.Load(Pki(ClusterPkiFiles.CaCertificate), Pki(ClusterPkiFiles.CaKey))
                : founding
                    ? Found(pki, say)
                    : throw new ArgumentException(
                        $"no cluster certificate in {pki}: issue one with 'flotilla cluster cert issue' on the host that holds the cluster CA and " +
                        "copy it there, or join with --join-token (flotilla cluster join-token on the CA holder), or pass --tls-cert/--tls-key/--tls-ca (or --cluster-ca-cert/--cluster-ca-key)");
        // Remember which CA this process belongs to; a CA key given by flag stays where the operator keeps it.
        if (flags.CaCert is not null)
            using (var authority = ClusterCa.Load(flags.CaCert)) authority.Save(pki);
        var issued = ca.Issue(role, name, addresses);
        ClusterPkiFiles.SaveIdentity(pki, issued);
        return Checked(new ClusterTls(issued, X509CertificateLoader.LoadCertificate(ca.Certificate.RawData)), role);
    }

    private static ClusterCa Found(string pki, Action<string>? say)
    {
        var ca = ClusterCa.Create();
        ca.Save(pki);
        say?.Invoke($"created the cluster CA in {pki} (sha256 {ca.Fingerprint})");
        return ca;
    }

    private static ClusterTls Checked(ClusterTls tls, ClusterRole role) =>
        tls.Self.Role == role
            ? tls
            : throw new ArgumentException($"the cluster certificate '{tls.Certificate.Subject}' is for a {ClusterCa.RoleName(tls.Self.Role)}, not a {ClusterCa.RoleName(role)}");
}
