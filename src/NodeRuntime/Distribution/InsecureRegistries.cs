using System.Net;
using System.Text.RegularExpressions;

namespace Flotilla.NodeRuntime.Distribution;

/// <summary>
/// dockerd's <c>--insecure-registry</c> rule: registries the engine may reach over plain HTTP, and over https without
/// verifying the certificate. An entry is a <c>host[:port]</c>, matched exactly against a reference's registry (as
/// dockerd does: <c>myhost</c> does not cover <c>myhost:5000</c>), or a CIDR that covers registries named by an IP
/// address. Loopback (<c>localhost</c>, 127.0.0.0/8, ::1) is always insecure. Unlike dockerd, host names are not
/// resolved to check them against the CIDRs.
/// </summary>
public sealed partial class InsecureRegistries
{
    /// <summary>dockerd's defaults, listed in <c>docker info</c> whatever the flags say.</summary>
    public static readonly IReadOnlyList<IPNetwork> LoopbackNetworks = [IPNetwork.Parse("::1/128"), IPNetwork.Parse("127.0.0.0/8")];

    public static InsecureRegistries None { get; } = new([], []);

    private InsecureRegistries(IReadOnlyList<string> hosts, IReadOnlyList<IPNetwork> networks)
    {
        Hosts = hosts;
        Networks = [.. LoopbackNetworks, .. networks];
    }

    /// <summary>Listed <c>host[:port]</c> entries, lowercase, in the order given.</summary>
    public IReadOnlyList<string> Hosts { get; }

    /// <summary>Loopback networks, then the listed CIDRs.</summary>
    public IReadOnlyList<IPNetwork> Networks { get; }

    // A DNS name or IPv4 address, or a bracketed IPv6 address, with an optional port.
    [GeneratedRegex(@"^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])(?::(?<port>[0-9]{1,5}))?$")]
    private static partial Regex HostPattern();

    /// <summary>
    /// The flag's values (each may hold several, comma-separated, as the environment variable does).
    /// Throws <see cref="FormatException"/> naming the bad entry.
    /// </summary>
    public static InsecureRegistries Parse(IEnumerable<string> values)
    {
        var hosts = new List<string>();
        var networks = new List<IPNetwork>();
        foreach (var raw in values.SelectMany(v => v.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)))
        {
            var entry = raw.ToLowerInvariant();
            if (entry.Contains("://"))
                throw new FormatException($"insecure registry {raw} should not contain '://'");
            if (entry.Contains('/'))
            {
                if (!IPNetwork.TryParse(entry, out var network))
                    throw new FormatException($"insecure registry {raw} is not a valid CIDR (expected e.g. 10.0.0.0/8)");
                if (!networks.Contains(network)) networks.Add(network);
                continue;
            }
            var match = HostPattern().Match(entry);
            if (!match.Success || (match.Groups["port"].Success && int.Parse(match.Groups["port"].Value) is < 1 or > 65535)
                || (entry.StartsWith('[') && !IPAddress.TryParse(entry[1..entry.IndexOf(']')], out _)))
                throw new FormatException($"insecure registry {raw} is not a valid host[:port] or CIDR");
            if (!hosts.Contains(entry)) hosts.Add(entry);
        }
        return new InsecureRegistries(hosts, networks);
    }

    /// <summary>May <paramref name="hostAndPort"/> (a reference's registry, as typed) be spoken to without TLS checks?</summary>
    public bool Allows(string hostAndPort)
    {
        var name = hostAndPort.ToLowerInvariant();
        if (Hosts.Contains(name)) return true;
        var host = HostOf(name);
        if (host == "localhost") return true;
        return IPAddress.TryParse(host, out var ip) && Networks.Any(n => n.Contains(ip.IsIPv4MappedToIPv6 ? ip.MapToIPv4() : ip));
    }

    /// <summary>The host part of <c>host[:port]</c> (brackets of an IPv6 address removed).</summary>
    public static string HostOf(string hostAndPort)
    {
        if (hostAndPort.StartsWith('['))
        {
            var end = hostAndPort.IndexOf(']');
            return end > 0 ? hostAndPort[1..end] : hostAndPort;
        }
        return hostAndPort.Count(c => c == ':') == 1 ? hostAndPort[..hostAndPort.IndexOf(':')] : hostAndPort;
    }

    /// <summary>The list as dockerd's <c>docker info</c> shows it: <c>RegistryConfig</c> (<c>registry.ServiceConfig</c>).</summary>
    public RegistryConfigInfo Describe()
    {
        var indexes = new SortedDictionary<string, IndexConfigInfo>(StringComparer.Ordinal)
        {
            ["docker.io"] = new("docker.io", [], Secure: true, Official: true),
        };
        foreach (var host in Hosts) indexes[host] = new IndexConfigInfo(host, [], Secure: false, Official: false);
        return new RegistryConfigInfo(Networks.Select(n => n.ToString()).ToList(), indexes, []);
    }
}

public sealed record RegistryConfigInfo(IReadOnlyList<string> InsecureRegistryCIDRs, IReadOnlyDictionary<string, IndexConfigInfo> IndexConfigs,
    IReadOnlyList<string> Mirrors);

public sealed record IndexConfigInfo(string Name, IReadOnlyList<string> Mirrors, bool Secure, bool Official);
