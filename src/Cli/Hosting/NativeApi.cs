using System.Net.Http.Json;
using System.Text.Json;

namespace Flotilla.Cli.Hosting;

/// <summary>
/// The CLI's client of Flotilla's native API; failures become one readable line on stderr. It authenticates with
/// the first token it can read: <c>FLOTILLA_API_TOKEN</c>, else the admin then the audit token file under
/// <c>FLOTILLA_DATA</c> (or <c>/var/lib/flotilla</c>, <c>/var/lib/flotilla-gateway</c>). <c>FLOTILLA_API_TLS=1</c> (or an
/// <c>https://</c> address) speaks TLS; <c>FLOTILLA_API_CACERT</c> names a CA to trust besides the system's.
/// </summary>
/// <param name="timeout">For the whole request; 30 s unless the verb's work takes longer (gc, replay).</param>
public sealed class NativeApi(string address, TimeSpan? timeout = null) : IDisposable
{
    private readonly HttpClient _client = Client(address, timeout);

    private static HttpClient Client(string address, TimeSpan? timeout)
    {
        var tls = address.StartsWith("https://", StringComparison.OrdinalIgnoreCase) || Environment.GetEnvironmentVariable("FLOTILLA_API_TLS") == "1";
        var handler = new HttpClientHandler();
        if (Environment.GetEnvironmentVariable("FLOTILLA_API_CACERT") is { Length: > 0 } caFile)
        {
            var authorities = new System.Security.Cryptography.X509Certificates.X509Certificate2Collection();
            authorities.ImportFromPemFile(caFile);
            handler.ServerCertificateCustomValidationCallback = (_, certificate, _, errors) =>
            {
                if (errors == System.Net.Security.SslPolicyErrors.None) return true;
                if (certificate is null || (errors & ~System.Net.Security.SslPolicyErrors.RemoteCertificateChainErrors) != 0) return false;
                using var chain = new System.Security.Cryptography.X509Certificates.X509Chain();
                chain.ChainPolicy.TrustMode = System.Security.Cryptography.X509Certificates.X509ChainTrustMode.CustomRootTrust;
                chain.ChainPolicy.CustomTrustStore.AddRange(authorities);
                chain.ChainPolicy.RevocationMode = System.Security.Cryptography.X509Certificates.X509RevocationMode.NoCheck;
                return chain.Build(certificate);
            };
        }
        var host = address.StartsWith("https://", StringComparison.OrdinalIgnoreCase) ? address[8..] : address;
        var client = new HttpClient(handler)
        {
            BaseAddress = new Uri($"{(tls ? "https" : "http")}://{Endpoints.Parse(host, "--http")}/"),
            Timeout = timeout ?? TimeSpan.FromSeconds(30),
        };
        if (Token() is { } token) client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        return client;
    }

    /// <summary>The first native API token this user can read, or null (the API then answers 401 and says where it is).</summary>
    public static string? Token()
    {
        if (Environment.GetEnvironmentVariable("FLOTILLA_API_TOKEN") is { Length: > 0 } token) return token.Trim();
        string[] roots = Environment.GetEnvironmentVariable("FLOTILLA_DATA") is { Length: > 0 } data
            ? [data]
            : ["/var/lib/flotilla", "/var/lib/flotilla-gateway"];
        foreach (var root in roots)
            foreach (var role in new[] { Gateway.Listeners.NativeRole.Admin, Gateway.Listeners.NativeRole.Audit })
            {
                try
                {
                    return File.ReadAllText(Gateway.Listeners.NativeApiTokens.FileOf(root, role)).Trim();
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                }
            }
        return null;
    }

    public static readonly JsonSerializerOptions Json = JsonSerializerOptions.Web;

    /// <summary>Sends the request; the response when it succeeded, otherwise null after printing why.</summary>
    /// <param name="streamed">Return once the headers are in, for responses read as a stream (follows, exports).</param>
    public async Task<HttpResponseMessage?> SendAsync(HttpMethod method, string path, object? body, CancellationToken cancellationToken,
        bool streamed = false)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is not null) request.Content = JsonContent.Create(body, body.GetType(), options: Json);
        HttpResponseMessage response;
        try
        {
            response = await _client.SendAsync(request,
                streamed ? HttpCompletionOption.ResponseHeadersRead : HttpCompletionOption.ResponseContentRead, cancellationToken);
        }
        catch (HttpRequestException ex)
        {
            Console.Error.WriteLine($"Cannot reach Flotilla at {_client.BaseAddress}: {ex.Message}. Is `flotilla up` running?");
            return null;
        }
        if (response.IsSuccessStatusCode) return response;
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        string message = text;
        try
        {
            using var doc = JsonDocument.Parse(text);
            if (doc.RootElement.TryGetProperty("message", out var m)) message = m.GetString() ?? text;
        }
        catch (JsonException)
        {
        }
        Console.Error.WriteLine($"Error ({(int)response.StatusCode}): {message}");
        response.Dispose();
        return null;
    }

    public void Dispose() => _client.Dispose();
}
