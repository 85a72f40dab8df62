using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace Flotilla.Tests.Registry.Conformance;

/// <summary>One HTTP exchange, read eagerly so assertions can quote it.</summary>
public sealed record RegistryResponse(string Method, Uri Url, int Status, IReadOnlyDictionary<string, string> Headers, byte[] Body)
{
    public string? Header(string name) => Headers.TryGetValue(name, out var value) ? value : null;

    public string Text => Encoding.UTF8.GetString(Body);

    /// <summary>The first <c>errors[].code</c> of an OCI error body, or null when the body is not one.</summary>
    public string? ErrorCode
    {
        get
        {
            try
            {
                using var json = JsonDocument.Parse(Body);
                return json.RootElement.GetProperty("errors")[0].GetProperty("code").GetString();
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or IndexOutOfRangeException)
            {
                return null;
            }
        }
    }

    public override string ToString()
    {
        var body = Body.Length == 0 ? "" : " " + (Text.Length > 300 ? Text[..300] + "…" : Text);
        var headers = string.Join(", ", Headers.Where(h => h.Key is "Location" or "Range" or "Content-Type" or "Docker-Content-Digest"
            or "OCI-Subject" or "OCI-Filters-Applied" or "Link").Select(h => $"{h.Key}: {h.Value}"));
        return $"{Method} {Url.PathAndQuery} → {Status} [{headers}]{body}";
    }
}

/// <summary>Plain HttpClient access to a registry: no redirects followed, short timeouts, every response captured.</summary>
public sealed class RegistryWire(Uri baseUri) : IDisposable
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);

    // Redirects are not followed so a 301/307 is visible to the checks; the timeout is per request (see SendAsync).
    private readonly HttpClient _http = new(new SocketsHttpHandler { AllowAutoRedirect = false, UseCookies = false })
    {
        Timeout = Timeout.InfiniteTimeSpan,
    };

    public Uri BaseUri => baseUri;

    /// <summary>Resolves a Location header (relative or absolute) or a path against the registry.</summary>
    public Uri Resolve(string pathOrUrl) => new(baseUri, pathOrUrl);

    /// <summary>Adds a query parameter to a Location that may already carry its own (distribution's <c>_state</c>).</summary>
    public static string WithQuery(string location, string name, string value) =>
        location + (location.Contains('?') ? "&" : "?") + name + "=" + Uri.EscapeDataString(value);

    public Task<RegistryResponse> SendAsync(HttpMethod method, string pathOrUrl, byte[]? body = null, string? contentType = null,
        IReadOnlyDictionary<string, string>? headers = null, TimeSpan? timeout = null) =>
        SendAsync(method, Resolve(pathOrUrl), body, contentType, headers, timeout);

    /// <summary>Sends the path exactly as written (no dot-segment or slash clean-up), for hostile names.</summary>
    public Task<RegistryResponse> SendRawPathAsync(HttpMethod method, string path) =>
        SendAsync(method, new Uri(baseUri.GetLeftPart(UriPartial.Authority) + path,
            new UriCreationOptions { DangerousDisablePathAndQueryCanonicalization = true }));

    public async Task<RegistryResponse> SendAsync(HttpMethod method, Uri url, byte[]? body = null, string? contentType = null,
        IReadOnlyDictionary<string, string>? headers = null, TimeSpan? timeout = null)
    {
        using var request = new HttpRequestMessage(method, url);
        if (body is not null)
        {
            request.Content = new ByteArrayContent(body);
            if (contentType is not null) request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        }
        foreach (var (name, value) in headers ?? new Dictionary<string, string>())
        {
            // OCI's Content-Range ("0-41") is not RFC 9110's, so it goes in unvalidated.
            if (request.Content is not null && name.StartsWith("Content-", StringComparison.OrdinalIgnoreCase))
                request.Content.Headers.TryAddWithoutValidation(name, value);
            else
                request.Headers.TryAddWithoutValidation(name, value);
        }
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        try
        {
            using var response = await _http.SendAsync(request, cts.Token);
            var bytes = await response.Content.ReadAsByteArrayAsync(cts.Token);
            var all = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            foreach (var (name, values) in response.Headers.Concat(response.Content.Headers))
                all[name] = string.Join(", ", values);
            return new RegistryResponse(method.Method, url, (int)response.StatusCode, all, bytes);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            throw new RegistryUnreachableException($"{method} {url} failed: {e.GetType().Name}: {e.Message}", e);
        }
    }

    /// <summary>Streams a blob body through SHA-256 without buffering it (for the large-blob check).</summary>
    public async Task<(int Status, long Length, string Digest)> GetDigestOfAsync(string path, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        using var response = await _http.GetAsync(Resolve(path), HttpCompletionOption.ResponseHeadersRead, cts.Token);
        await using var stream = await response.Content.ReadAsStreamAsync(cts.Token);
        using var sha = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 20];
        long length = 0;
        int read;
        while ((read = await stream.ReadAsync(buffer, cts.Token)) > 0)
        {
            sha.AppendData(buffer, 0, read);
            length += read;
        }
        return ((int)response.StatusCode, length, "sha256:" + Convert.ToHexStringLower(sha.GetHashAndReset()));
    }

    public void Dispose() => _http.Dispose();
}

/// <summary>The registry did not answer at all: never counted as the expected failure of a known gap.</summary>
public sealed class RegistryUnreachableException(string message, Exception inner) : Exception(message, inner);
