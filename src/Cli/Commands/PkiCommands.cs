using System.CommandLine;
using Flotilla.Cluster.Security;

namespace Flotilla.Cli.Commands;

/// <summary>
/// <c>flotilla cluster ca init</c> and <c>flotilla cluster cert issue</c>: make the cluster CA and the certificate of a
/// node or gateway that joins, on the host that keeps the CA key. The output directory is the joiner's
/// <c>&lt;data&gt;/pki</c> (or its <c>--tls-cert/--tls-key/--tls-ca</c>).
/// </summary>
public static class PkiCommands
{
    public static Command Create()
    {
        var cluster = new Command("cluster", "Cluster certificates: the CA and the certificates of nodes and gateways");
        var ca = new Command("ca", "The cluster certificate authority") { CaInit() };
        var cert = new Command("cert", "Certificates of cluster processes") { CertIssue() };
        cluster.Subcommands.Add(ca);
        cluster.Subcommands.Add(cert);
        cluster.Subcommands.Add(JoinTokenCommand());
        return cluster;
    }

    private static Command CaInit()
    {
        var data = Flags.WithEnv("--data", "FLOTILLA_DATA", "/var/lib/flotilla", "data directory of the founding process (the CA goes to <data>/pki)");
        var command = new Command("init", "Make the cluster CA (ca.pem, ca-key.pem 0600) unless there is one") { data };
        command.SetAction(result =>
        {
            var pki = ClusterPkiFiles.In(Path.GetFullPath(result.GetValue(data)!));
            var certificate = Path.Combine(pki, ClusterPkiFiles.CaCertificate);
            if (File.Exists(certificate))
            {
                using var existing = ClusterCa.Load(certificate);
                Console.Error.WriteLine($"flotilla cluster ca init: {certificate} exists (sha256 {existing.Fingerprint}); not replaced");
                return 1;
            }
            using var ca = ClusterCa.Create();
            ca.Save(pki);
            Console.WriteLine($"{certificate} sha256 {ca.Fingerprint}");
            return 0;
        });
        return command;
    }

    private static Command JoinTokenCommand()
    {
        var data = Flags.WithEnv("--data", "FLOTILLA_DATA", "/var/lib/flotilla", "data directory of the process that holds the CA key");
        var ttl = new Option<string>("--ttl")
        {
            Description = "how long the token is good for (Go-style: 30m, 24h, 7d; as kubeadm token create --ttl)",
            DefaultValueFactory = _ => "24h",
        };
        var rotate = new Option<bool>("--rotate") { Description = "make a new join secret first: every token printed before stops working" };
        var command = new Command("join-token", "Print a token with which a node or gateway joins (--join-token) and gets its certificate") { data, ttl, rotate };
        command.SetAction(result =>
        {
            if (!RegistryCommand.TryParseDuration(result.GetValue(ttl)!, out var lifetime) || lifetime < TimeSpan.FromSeconds(1))
            {
                // kubeadm's --ttl 0 (never expires) is not offered: a token that never expires is what this replaced.
                Console.Error.WriteLine($"flotilla cluster join-token: --ttl must be a positive duration such as 30m, 24h or 7d, not '{result.GetValue(ttl)}'");
                return 1;
            }
            var pki = ClusterPkiFiles.In(Path.GetFullPath(result.GetValue(data)!));
            using var ca = ClusterCa.Load(Path.Combine(pki, ClusterPkiFiles.CaCertificate), Path.Combine(pki, ClusterPkiFiles.CaKey));
            var secret = result.GetValue(rotate) ? JoinSecret.Rotate(pki) : JoinSecret.LoadOrCreate(pki);
            var token = JoinToken.Issue(ca, secret, lifetime, DateTimeOffset.UtcNow);
            Console.WriteLine(token);
            Console.Error.WriteLine($"valid until {token.Expires:u}{(result.GetValue(rotate) ? "; earlier tokens are revoked" : "")}");
            return 0;
        });
        return command;
    }

    private static Command CertIssue()
    {
        var data = Flags.WithEnv("--data", "FLOTILLA_DATA", "/var/lib/flotilla", "data directory that holds the CA (<data>/pki/ca-key.pem)");
        var role = new Option<string>("--role") { Description = "node or gateway", Required = true };
        var name = new Option<string>("--name") { Description = "the process's --name", Required = true };
        var san = new Option<string[]>("--san") { Description = "an address the process is reached at (IP or DNS; repeatable)", AllowMultipleArgumentsPerToken = false };
        var output = new Option<string>("--out") { Description = "directory for cert.pem, key.pem (0600) and ca.pem: the joiner's <data>/pki", Required = true };
        var command = new Command("issue", "Issue a certificate for a node or gateway with the cluster CA") { data, role, name, san, output };
        command.SetAction(result =>
        {
            if (ClusterCa.ParseRole(result.GetValue(role)) is not { } parsedRole)
            {
                Console.Error.WriteLine($"flotilla cluster cert issue: --role must be node or gateway, not '{result.GetValue(role)}'");
                return 2;
            }
            var pki = ClusterPkiFiles.In(Path.GetFullPath(result.GetValue(data)!));
            using var ca = ClusterCa.Load(Path.Combine(pki, ClusterPkiFiles.CaCertificate), Path.Combine(pki, ClusterPkiFiles.CaKey));
            var directory = Path.GetFullPath(result.GetValue(output)!);
            using var issued = ca.Issue(parsedRole, result.GetValue(name)!, result.GetValue(san) ?? []);
            ClusterPkiFiles.SaveIdentity(directory, issued);
            using (var publicCa = ClusterCa.Load(Path.Combine(pki, ClusterPkiFiles.CaCertificate))) publicCa.Save(directory);
            Console.WriteLine($"{directory}: {issued.Subject}, until {issued.NotAfter:yyyy-MM-dd}");
            return 0;
        });
        return command;
    }
}
