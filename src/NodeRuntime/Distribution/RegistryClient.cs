using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Serialization;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Storage;

namespace Flotilla.NodeRuntime.Distribution;

public sealed record RegistryClientOptions
{
    /// <summary>Short, so an unreachable registry (docker.io from an offline machine) fails fast instead of hanging.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>For requests with small bodies (ping, tokens, manifests, search); blob transfers are bounded by the caller only.</summary>
    public TimeSpan SmallRequestTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Registries (<c>--insecure-registry</c>, plus loopback) tried over https without certificate checks, then plain HTTP.
    /// </summary>
    public InsecureRegistries InsecureRegistries { get; init; } = InsecureRegistries.None;

    public string UserAgent { get; init; } = "flotilla";

    /// <summary>
    /// dockerd's per-registry TLS files: <c>&lt;dir&gt;/&lt;host[:port]&gt;/*.crt</c> are CAs trusted for that registry
    /// (besides the system's), <c>*.cert</c> with the <c>*.key</c> of the same name a client certificate it is shown.
    /// Null: none.
    /// </summary>
    public string? CertsDirectory { get; init; } = RegistryCertificates.DefaultDirectory;
}

/// <summary>
/// A client of the OCI distribution / Docker Registry V2 API, as the docker daemon is one: endpoint resolution
/// (https, with the http fallback Docker allows for loopback registries), the token and basic auth flows,
/// manifests, blobs, uploads, cross-repository mounts, plus the v1 search of old. One per process; it holds
/// the connection pool, resolved endpoints and a token cache per registry, user and scope.
/// </summary>
public sealed class RegistryClient : IDisposable
{
    public const string DockerHubRegistry = "registry-1.docker.io";
    public const string DockerHubIndex = "index.docker.io";
    /// <summary>Manifests and configs are read into memory: this is their cap (the spec's servers accept at least 4 MiB).</summary>
    public const int MaxManifestBytes = 4 << 20;

    private readonly HttpClient _http;
    // For insecure registries: https without certificate checks (dockerd's InsecureSkipVerify for them).
    private readonly HttpClient _insecureHttp;
    private readonly ConcurrentDictionary<string, Uri> _endpoints = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, (string Token, DateTimeOffset Expires)> _tokens = new(StringComparer.Ordinal);

    // Registries with a certs.d directory: their own client (CAs, client certificate), made on first use.
    private readonly ConcurrentDictionary<string, Lazy<HttpClient>> _certsHttp = new(StringComparer.Ordinal);

    public RegistryClient(RegistryClientOptions? options = null)
    {
        Options = options ?? new RegistryClientOptions();
        _http = NewClient(verifyCertificates: true);
        _insecureHttp = NewClient(verifyCertificates: false);
    }

    private HttpClient NewClient(bool verifyCertificates, RegistryCertificates? certificates = null)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectTimeout = Options.ConnectTimeout,
            AllowAutoRedirect = true, // blob GETs may be redirected to storage; Authorization is not forwarded
            AutomaticDecompression = DecompressionMethods.None,
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            UseCookies = false,
        };
        if (!verifyCertificates) handler.SslOptions.RemoteCertificateValidationCallback = (_, _, _, _) => true;
        else if (certificates is not null) certificates.Configure(handler.SslOptions);
        var http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
        http.DefaultRequestHeaders.UserAgent.ParseAdd(Options.UserAgent);
        return http;
    }

    /// <summary>
    /// The client for a request: without certificate checks only for an insecure registry's https (listed with or
    /// without its default port, which <see cref="Uri.Authority"/> leaves out).
    /// </summary>
    private HttpClient ClientFor(HttpRequestMessage request)
    {
        if (request.RequestUri is not { Scheme: "https" } uri) return _http;
        if (AllowsHttp(uri.Authority) || AllowsHttp($"{uri.Host}:{uri.Port}")) return _insecureHttp;
        // dockerd's directory name is the registry as named: host:port, or host alone for 443 (as Uri.Authority).
        if (Options.CertsDirectory is not { } certs) return _http;
        if (_certsHttp.TryGetValue(uri.Authority, out var known)) return known.Value;
        if (RegistryCertificates.Load(certs, uri.Authority) is not { } found) return _http;
        return _certsHttp.GetOrAdd(uri.Authority, _ => new Lazy<HttpClient>(() => NewClient(verifyCertificates: true, found))).Value;
    }

    public RegistryClientOptions Options { get; }

    public void Dispose()
    {
        _http.Dispose();
        _insecureHttp.Dispose();
        foreach (var client in _certsHttp.Values)
            if (client.IsValueCreated) client.Value.Dispose();
    }

    /// <summary>The host a reference's domain is served from: <c>docker.io</c> is <c>registry-1.docker.io</c>.</summary>
    public static string RegistryHost(string domain) => domain == ImageReference.DefaultDomain ? DockerHubRegistry : domain;

    /// <summary>Docker's default "insecure registry" rule: localhost, 127.0.0.0/8 and ::1, with any port.</summary>
    public static bool IsLoopback(string hostAndPort) => InsecureRegistries.None.Allows(hostAndPort);

    private bool AllowsHttp(string host) => Options.InsecureRegistries.Allows(host);

    private IEnumerable<Uri> Candidates(string host)
    {
        yield return new Uri($"https://{host}/");
        if (AllowsHttp(host)) yield return new Uri($"http://{host}/");
    }

    /// <summary>
    /// Opens a session with the registry that serves <paramref name="domain"/>: pings <c>/v2/</c> over https
    /// (then http for loopback/insecure registries) and keeps the auth challenge it answered with.
    /// </summary>
    public async Task<RegistrySession> OpenAsync(string domain, RegistryCredentials? credentials, CancellationToken cancellationToken = default)
    {
        var host = RegistryHost(domain);
        var (baseUri, response) = await PingAsync(host, "v2/", cancellationToken);
        using (response)
        {
            var challenges = response.StatusCode == HttpStatusCode.Unauthorized
                ? AuthChallenge.Parse(response.Headers.WwwAuthenticate.Select(h => h.ToString()))
                : [];
            return new RegistrySession(this, domain, host, baseUri, credentials, challenges);
        }
    }

    /// <summary>GETs <paramref name="path"/> on each candidate base until one answers at all (any HTTP status).</summary>
    private async Task<(Uri BaseUri, HttpResponseMessage Response)> PingAsync(string host, string path, CancellationToken cancellationToken)
    {
        if (_endpoints.TryGetValue(host + "|" + path, out var known))
        {
            try
            {
                return (known, await SendSmallAsync(new HttpRequestMessage(HttpMethod.Get, new Uri(known, path)), cancellationToken));
            }
            catch (HttpRequestException)
            {
                _endpoints.TryRemove(host + "|" + path, out _);
            }
        }
        Exception? last = null;
        foreach (var candidate in Candidates(host))
        {
            try
            {
                var response = await SendSmallAsync(new HttpRequestMessage(HttpMethod.Get, new Uri(candidate, path)), cancellationToken);
                _endpoints[host + "|" + path] = candidate;
                return (candidate, response);
            }
            catch (HttpRequestException ex)
            {
                last = ex;
            }
            catch (TaskCanceledException ex) when (!cancellationToken.IsCancellationRequested)
            {
                last = new TimeoutException("timeout", ex);
            }
        }
        throw new RegistryException(500, $"Get \"{Candidates(host).First()}{path}\": {Describe(last)}", inner: last);
    }

    private static string Describe(Exception? ex) => ex switch
    {
        null => "no endpoint",
        HttpRequestException { InnerException: { } inner } h => $"{h.Message} ({inner.Message})",
        _ => ex.Message,
    };

    internal async Task<HttpResponseMessage> SendSmallAsync(HttpRequestMessage request, CancellationToken cancellationToken,
        HttpCompletionOption completion = HttpCompletionOption.ResponseContentRead)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(Options.SmallRequestTimeout);
        try
        {
            return await ClientFor(request).SendAsync(request, completion, timeout.Token);
        }
        finally
        {
            request.Dispose();
        }
    }

    /// <summary>Returns once the headers are in; the request (and a body stream it owns, e.g. a blob file) is disposed then.</summary>
    internal async Task<HttpResponseMessage> SendStreamingAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        try
        {
            return await ClientFor(request).SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        }
        finally
        {
            request.Dispose();
        }
    }

    internal bool TryGetToken(string key, out string token)
    {
        token = "";
        if (!_tokens.TryGetValue(key, out var cached) || cached.Expires <= DateTimeOffset.UtcNow) return false;
        token = cached.Token;
        return true;
    }

    internal void CacheToken(string key, string token, TimeSpan lifetime) =>
        _tokens[key] = (token, DateTimeOffset.UtcNow + lifetime - TimeSpan.FromSeconds(10));

    internal void ForgetToken(string key) => _tokens.TryRemove(key, out _);

    /// <summary>
    /// Docker's <c>POST /auth</c>: pings <c>/v2/</c>; an open registry accepts anyone; a Bearer registry must
    /// give a token for the credentials (no scope); a Basic registry must accept them on <c>/v2/</c>.
    /// </summary>
    public async Task LoginAsync(string domain, RegistryCredentials credentials, CancellationToken cancellationToken = default)
    {
        var session = await OpenAsync(domain, credentials, cancellationToken);
        var challenge = session.Challenges.FirstOrDefault(c => c.IsBearer) ?? session.Challenges.FirstOrDefault(c => c.IsBasic);
        if (challenge is null)
        {
            if (session.Challenges.Count > 0)
                throw new RegistryException(401, $"unable to login to {domain}: unsupported authentication scheme {session.Challenges[0].Scheme}");
            return;
        }
        if (challenge.IsBearer)
        {
            // Always asks the token server: a login checks the credentials, a cached token would not.
            await session.FetchTokenAsync(challenge, [], cancellationToken, useCache: false);
            return;
        }
        var request = new HttpRequestMessage(HttpMethod.Get, new Uri(session.BaseUri, "v2/"));
        if (credentials.HasBasic) request.Headers.Authorization = new AuthenticationHeaderValue("Basic", credentials.BasicHeaderValue);
        var uri = request.RequestUri;
        using var response = await SendSmallAsync(request, cancellationToken);
        if (response.IsSuccessStatusCode) return;
        if (response.StatusCode == HttpStatusCode.Unauthorized)
            throw new RegistryException(401, $"login attempt to {uri} failed with status: 401 Unauthorized");
        throw await RegistrySession.ErrorFromAsync(response, "login", cancellationToken);
    }

    /// <summary>
    /// The registry v1 search Docker still speaks (<c>GET /v1/search?q=&amp;n=</c> after a <c>/v1/_ping</c>).
    /// <paramref name="domain"/> <c>docker.io</c> is searched at <c>index.docker.io</c>.
    /// </summary>
    public async Task<RegistrySearchResults> SearchAsync(string domain, string term, int limit, RegistryCredentials? credentials,
        CancellationToken cancellationToken = default)
    {
        var host = domain == ImageReference.DefaultDomain ? DockerHubIndex : domain;
        var (baseUri, ping) = await PingAsync(host, "v1/_ping", cancellationToken);
        ping.Dispose();
        var uri = new Uri(baseUri, $"v1/search?q={Uri.EscapeDataString(term)}&n={limit}");
        var request = new HttpRequestMessage(HttpMethod.Get, uri);
        request.Headers.Add("X-Docker-Token", "true");
        if (credentials is { HasBasic: true }) request.Headers.Authorization = new AuthenticationHeaderValue("Basic", credentials.BasicHeaderValue);
        using var response = await SendSmallAsync(request, cancellationToken);
        if (response.StatusCode != HttpStatusCode.OK)
            throw new RegistryException(500, $"Unexpected status code {(int)response.StatusCode}");
        var body = await RegistrySession.ReadCappedAsync(response.Content, MaxManifestBytes, "search results", cancellationToken);
        try
        {
            return JsonSerializer.Deserialize<RegistrySearchResults>(body) ?? new RegistrySearchResults();
        }
        catch (JsonException ex)
        {
            throw new RegistryException(500, $"error decoding search results from {host}: {ex.Message}", inner: ex);
        }
    }
}

public sealed record RegistrySearchResults
{
    [JsonPropertyName("query")] public string? Query { get; init; }
    [JsonPropertyName("num_results")] public int NumResults { get; init; }
    [JsonPropertyName("results")] public List<RegistrySearchResult> Results { get; init; } = [];
}

public sealed record RegistrySearchResult
{
    [JsonPropertyName("name")] public string Name { get; init; } = "";
    [JsonPropertyName("description")] public string? Description { get; init; }
    [JsonPropertyName("star_count")] public int StarCount { get; init; }
    [JsonPropertyName("is_official")] public bool IsOfficial { get; init; }
    [JsonPropertyName("is_automated")] public bool IsAutomated { get; init; }
}

/// <summary>A manifest as the registry served it: exact bytes, media type, and digest (verified).</summary>
public sealed record RegistryManifest(byte[] Bytes, string MediaType, Digest Digest);
