using System.CommandLine;
using Flotilla.Gateway.Listeners;

namespace Flotilla.Cli.Commands;

/// <summary>
/// The flags of a gateway's client listeners, as dockerd spells them: <c>--tls</c>, <c>--tlsverify</c>,
/// <c>--tlscacert</c>, <c>--tlscert</c>, <c>--tlskey</c>, <c>--api-cors-header</c>; plus <c>--allowed-host</c>.
/// </summary>
public sealed class ClientListenerFlags
{
    public Option<bool?> Tls { get; } = new("--tls") { Description = "serve TLS on the TCP client listeners (implied by --tlsverify or --tlscert); --tls=false says plain TCP is meant" };
    public Option<bool?> TlsVerify { get; } = new("--tlsverify") { Description = "TLS, and the Docker API requires client certificates signed by --tlscacert (dockerd's --tlsverify)" };
    public Option<string?> CaCert { get; } = Flags.OptionalWithEnv("--tlscacert", "FLOTILLA_TLSCACERT", "PEM CA that Docker API client certificates must chain to (with --tlsverify)");
    public Option<string?> Cert { get; } = Flags.OptionalWithEnv("--tlscert", "FLOTILLA_TLSCERT", "PEM server certificate of the Docker API, native API and registry listeners");
    public Option<string?> Key { get; } = Flags.OptionalWithEnv("--tlskey", "FLOTILLA_TLSKEY", "PEM private key of --tlscert");
    public Option<string[]> CorsOrigins { get; } = Flags.RepeatableWithEnv("--api-cors-header", "FLOTILLA_API_CORS_HEADER",
        "browser origin allowed to call the client APIs (e.g. https://ui.example; '*' for any). None by default: requests from web pages are refused");
    public Option<string[]> AllowedHosts { get; } = Flags.RepeatableWithEnv("--allowed-host", "FLOTILLA_ALLOWED_HOSTS",
        "host name clients use to reach the listeners, besides IP addresses, localhost and this machine's name (a Host header naming anything else is refused)");

    public IEnumerable<Option> All => [Tls, TlsVerify, CaCert, Cert, Key, CorsOrigins, AllowedHosts];

    /// <summary>The TLS settings, or null for plain TCP; throws <see cref="ArgumentException"/> for a combination that cannot be served.</summary>
    public ClientTls? ParseTls(ParseResult result)
    {
        var verify = result.GetValue(TlsVerify) == true;
        var cert = result.GetValue(Cert);
        var key = result.GetValue(Key);
        var ca = result.GetValue(CaCert);
        var wanted = verify || result.GetValue(Tls) == true || cert is not null || key is not null;
        if (!wanted)
        {
            if (ca is not null) throw new ArgumentException("--tlscacert is used only with --tlsverify");
            return null;
        }
        if (result.GetValue(Tls) == false) throw new ArgumentException("--tls=false contradicts --tlsverify/--tlscert/--tlskey");
        if (cert is null || key is null) throw new ArgumentException("TLS needs both --tlscert and --tlskey (PEM files)");
        if (verify && ca is null) throw new ArgumentException("--tlsverify needs --tlscacert");
        if (!verify && ca is not null) throw new ArgumentException("--tlscacert is used only with --tlsverify");
        return new ClientTls(Path.GetFullPath(cert), Path.GetFullPath(key), ca is null ? null : Path.GetFullPath(ca), verify);
    }

    /// <summary>Plain TCP was asked for in so many words (<c>--tls=false</c> or <c>--tlsverify=false</c>), as dockerd takes it.</summary>
    public bool PlainExplicitly(ParseResult result) => result.GetValue(Tls) == false || result.GetValue(TlsVerify) == false;

    public BrowserPolicy Browsers(ParseResult result) =>
        new(result.GetValue(AllowedHosts) ?? [], result.GetValue(CorsOrigins) ?? []);
}
