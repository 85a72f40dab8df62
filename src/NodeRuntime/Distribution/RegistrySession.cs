using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Storage;

namespace Flotilla.NodeRuntime.Distribution;

/// <summary>
/// Talking to one registry with one set of credentials: every request is authorised for its scope
/// (a cached bearer token, or basic credentials), and retried once after a fresh 401 challenge.
/// Repository names are paths inside the registry (<c>library/busybox</c>).
/// </summary>
public sealed partial class RegistrySession
{
    private readonly RegistryClient _client;
    private IReadOnlyList<AuthChallenge> _challenges;

    internal RegistrySession(RegistryClient client, string domain, string host, Uri baseUri, RegistryCredentials? credentials,
        IReadOnlyList<AuthChallenge> challenges)
    {
        _client = client;
        Domain = domain;
        Host = host;
        BaseUri = baseUri;
        Credentials = credentials is { IsEmpty: false } ? credentials : null;
        _challenges = challenges;
    }

    /// <summary>The reference domain (<c>docker.io</c>, <c>127.0.0.1:5000</c>).</summary>
    public string Domain { get; }
    /// <summary>The host actually spoken to (<c>registry-1.docker.io</c>).</summary>
    public string Host { get; }
    public Uri BaseUri { get; }
    public RegistryCredentials? Credentials { get; }
    public IReadOnlyList<AuthChallenge> Challenges => _challenges;

    private static readonly string[] ManifestAccept =
    [
        MediaTypes.OciManifest, MediaTypes.OciIndex, MediaTypes.DockerManifest, MediaTypes.DockerManifestList,
    ];

    public const string Schema1 = "application/vnd.docker.distribution.manifest.v1+json";
    public const string Schema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws";

    private static string Pull(string repository) => $"repository:{repository}:pull";
    private static string PushPull(string repository) => $"repository:{repository}:pull,push";

    /// <summary>
    /// GETs a manifest by tag or digest with the full Accept list. The digest is that of the bytes; when the
    /// reference is a digest, or the registry announces one, they must agree.
    /// </summary>
    public async Task<RegistryManifest> GetManifestAsync(string repository, string reference, CancellationToken cancellationToken = default)
    {
        using var response = await SendAsync(() =>
        {
            var r = new HttpRequestMessage(HttpMethod.Get, Url($"v2/{repository}/manifests/{reference}"));
            foreach (var type in ManifestAccept) r.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(type));
            r.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(Schema1Signed, 0.5));
            r.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(Schema1, 0.5));
            return r;
        }, [Pull(repository)], small: true, cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            var error = await ErrorFromAsync(response, "manifest", cancellationToken);
            if (error.Status == 404)
                throw new RegistryException(404, $"manifest for {Domain}/{repository}:{reference} not found: {error.Message}", error.Code);
            throw error;
        }
        var bytes = await ReadCappedAsync(response.Content, RegistryClient.MaxManifestBytes, "manifest", cancellationToken);
        var digest = Digest.Of(bytes);
        if (reference.Contains(':') && Digest.TryParse(reference, out var wanted) && wanted != digest)
            throw new RegistryException(500, $"manifest verification failed for digest {wanted}");
        if (response.Headers.TryGetValues("Docker-Content-Digest", out var announced) && Digest.TryParse(announced.FirstOrDefault(), out var said)
            && said != digest)
            throw new RegistryException(500, $"manifest verification failed: the registry says {said}, the content is {digest}");
        var mediaType = response.Content.Headers.ContentType?.MediaType;
        if (mediaType is null or "application/json" or "text/plain" or "application/octet-stream") mediaType = MediaTypeOf(bytes);
        return new RegistryManifest(bytes, mediaType, digest);
    }

    /// <summary>At most this many tags (and pages of them) are read from one repository.</summary>
    public const int MaxTags = 10_000;
    private const int MaxTagPages = 1_000;

    /// <summary>A tag as the distribution spec allows one.</summary>
    [System.Text.RegularExpressions.GeneratedRegex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")]
    private static partial System.Text.RegularExpressions.Regex TagPattern();

    /// <summary>
    /// Every tag of a repository (<c>GET /v2/&lt;name&gt;/tags/list</c>), in the registry's order, following the
    /// <c>Link: &lt;…&gt;; rel="next"</c> pages (<paramref name="pageSize"/> asks for pages of that many; by default the
    /// registry decides). Tags are validated; a next page must stay on this registry.
    /// </summary>
    public async Task<IReadOnlyList<string>> ListTagsAsync(string repository, int? pageSize = null, CancellationToken cancellationToken = default)
    {
        var tags = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        Uri? next = Url($"v2/{repository}/tags/list" + (pageSize is { } n ? $"?n={n}" : ""));
        for (var page = 0; next is not null; page++)
        {
            if (page >= MaxTagPages) throw new RegistryException(500, $"the tags list of {Domain}/{repository} has more than {MaxTagPages} pages");
            var uri = next;
            using var response = await SendAsync(() => new HttpRequestMessage(HttpMethod.Get, uri), [Pull(repository)], small: true, cancellationToken);
            if (!response.IsSuccessStatusCode)
            {
                var error = await ErrorFromAsync(response, "tags list", cancellationToken);
                if (error.Status == 404)
                    throw new RegistryException(404, $"repository {Domain}/{repository} not found: {error.Message}", error.Code);
                throw error;
            }
            var bytes = await ReadCappedAsync(response.Content, RegistryClient.MaxManifestBytes, "tags list", cancellationToken);
            TagList? list;
            try
            {
                list = JsonSerializer.Deserialize<TagList>(bytes);
            }
            catch (JsonException ex)
            {
                throw new RegistryException(500, $"invalid tags list from {Domain}/{repository}: {ex.Message}", inner: ex);
            }
            foreach (var tag in list?.Tags ?? [])
            {
                if (tag is null || !TagPattern().IsMatch(tag))
                    throw new RegistryException(500, $"invalid tag '{tag}' in the tags list of {Domain}/{repository}");
                if (seen.Add(tag)) tags.Add(tag);
            }
            if (tags.Count > MaxTags) throw new RegistryException(500, $"{Domain}/{repository} has more than {MaxTags} tags");
            next = NextPage(response.Headers.TryGetValues("Link", out var links) ? links : [], BaseUri);
            if (next == uri) break;
        }
        return tags;
    }

    private sealed record TagList([property: System.Text.Json.Serialization.JsonPropertyName("tags")] List<string?>? Tags);

    /// <summary>
    /// The <c>rel="next"</c> target of <c>Link</c> headers, resolved against <paramref name="baseUri"/>; null when there is
    /// none. A target on another scheme or host is refused: the request would carry this registry's credentials.
    /// </summary>
    public static Uri? NextPage(IEnumerable<string> linkHeaders, Uri baseUri)
    {
        foreach (var header in linkHeaders)
        {
            var rest = header.AsSpan();
            while (true)
            {
                var open = rest.IndexOf('<');
                if (open < 0) break;
                var close = rest[open..].IndexOf('>');
                if (close < 0) throw new RegistryException(500, $"malformed Link header '{header}'");
                var target = rest.Slice(open + 1, close - 1).ToString();
                rest = rest[(open + close + 1)..];
                var end = rest.IndexOf('<');
                var parameters = (end < 0 ? rest : rest[..end]).ToString();
                var isNext = parameters.Split(';', StringSplitOptions.TrimEntries).Any(p =>
                    p.Replace(" ", "").Equals("rel=\"next\"", StringComparison.OrdinalIgnoreCase) || p.Replace(" ", "").Equals("rel=next", StringComparison.OrdinalIgnoreCase));
                if (!isNext) continue;
                if (!Uri.TryCreate(baseUri, target, out var resolved))
                    throw new RegistryException(500, $"malformed Link target '{target}'");
                if (resolved.Scheme != baseUri.Scheme || !resolved.Authority.Equals(baseUri.Authority, StringComparison.OrdinalIgnoreCase))
                    throw new RegistryException(500, $"the registry's next page {resolved} is not on {baseUri.GetLeftPart(UriPartial.Authority)}");
                return resolved;
            }
        }
        return null;
    }

    /// <summary>The <c>mediaType</c> a manifest names for itself (schema 1 has none but <c>schemaVersion: 1</c>).</summary>
    private static string MediaTypeOf(byte[] bytes)
    {
        try
        {
            using var doc = JsonDocument.Parse(bytes);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) return "";
            if (root.TryGetProperty("mediaType", out var mt) && mt.ValueKind == JsonValueKind.String) return mt.GetString()!;
            if (root.TryGetProperty("schemaVersion", out var sv) && sv.ValueKind == JsonValueKind.Number && sv.GetInt32() == 1) return Schema1;
            if (root.TryGetProperty("manifests", out _)) return MediaTypes.OciIndex;
            return MediaTypes.OciManifest;
        }
        catch (JsonException)
        {
            return "";
        }
    }

    /// <summary>Opens a blob for reading. The caller verifies what it reads (digest and size).</summary>
    public async Task<Stream> OpenBlobAsync(string repository, Digest digest, CancellationToken cancellationToken = default)
    {
        var response = await SendAsync(() => new HttpRequestMessage(HttpMethod.Get, Url($"v2/{repository}/blobs/{digest}")),
            [Pull(repository)], small: false, cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            using (response) throw await ErrorFromAsync(response, "blob", cancellationToken);
        }
        return new ResponseStream(response, await response.Content.ReadAsStreamAsync(cancellationToken));
    }

    /// <summary>A small blob (an image config) read whole and verified against its descriptor.</summary>
    public async Task<byte[]> GetBlobBytesAsync(string repository, Digest digest, long size, CancellationToken cancellationToken = default)
    {
        if (size > RegistryClient.MaxManifestBytes) throw new RegistryException(500, $"blob {digest} is too large ({size} bytes)");
        await using var stream = await OpenBlobAsync(repository, digest, cancellationToken);
        var buffer = new MemoryStream();
        var chunk = new byte[1 << 16];
        int n;
        while ((n = await stream.ReadAsync(chunk, cancellationToken)) > 0)
        {
            buffer.Write(chunk, 0, n);
            if (buffer.Length > size) break;
        }
        var bytes = buffer.ToArray();
        var actual = Digest.Of(bytes);
        if (bytes.Length != size || actual != digest)
            throw new RegistryException(500, $"blob {digest} failed verification: got {bytes.Length} bytes with digest {actual}");
        return bytes;
    }

    /// <summary>HEAD a blob: its size when the repository has it, null when not (404).</summary>
    public async Task<long?> StatBlobAsync(string repository, Digest digest, bool forPush, CancellationToken cancellationToken = default)
    {
        using var response = await SendAsync(() => new HttpRequestMessage(HttpMethod.Head, Url($"v2/{repository}/blobs/{digest}")),
            [forPush ? PushPull(repository) : Pull(repository)], small: true, cancellationToken);
        if (response.StatusCode == HttpStatusCode.NotFound) return null;
        if (!response.IsSuccessStatusCode) throw await ErrorFromAsync(response, "blob", cancellationToken);
        return response.Content.Headers.ContentLength ?? throw new RegistryException(500, $"the registry sent no Content-Length for blob {digest}");
    }

    /// <summary>
    /// Cross-repository mount (<c>POST …/blobs/uploads/?mount=&amp;from=</c>): true when the registry linked the blob
    /// (201); when it opened an upload session instead (202), the session is cancelled and false returned.
    /// </summary>
    public async Task<bool> TryMountBlobAsync(string repository, Digest digest, string fromRepository, CancellationToken cancellationToken = default)
    {
        var mount = Url($"v2/{repository}/blobs/uploads/?mount={digest}&from={Uri.EscapeDataString(fromRepository)}");
        using var response = await SendAsync(() => new HttpRequestMessage(HttpMethod.Post, mount) { Content = Empty() },
            [PushPull(repository), Pull(fromRepository)], small: true, cancellationToken);
        if (response.StatusCode == HttpStatusCode.Created) return true;
        if (response.StatusCode == HttpStatusCode.Accepted)
        {
            if (response.Headers.Location is { } location)
            {
                try
                {
                    using var cancel = await SendAsync(() => new HttpRequestMessage(HttpMethod.Delete, Resolve(location)),
                        [PushPull(repository)], small: true, cancellationToken);
                }
                catch (HttpRequestException)
                {
                    // An abandoned upload session expires on its own.
                }
            }
            return false;
        }
        throw await ErrorFromAsync(response, "blob mount", cancellationToken);
    }

    /// <summary>
    /// Uploads a blob the way the docker daemon does: <c>POST</c> a session, one streamed <c>PATCH</c> with the whole
    /// content, <c>PUT ?digest=</c> to close. <paramref name="open"/> is called for each attempt.
    /// </summary>
    public async Task UploadBlobAsync(string repository, Digest digest, long size, Func<Stream> open, Action<long>? progress,
        CancellationToken cancellationToken = default)
    {
        var location = await StartUploadAsync(repository, cancellationToken);
        location = await PatchUploadAsync(repository, location, () =>
        {
            var content = new StreamContent(new ProgressReadStream(open(), progress));
            content.Headers.ContentLength = size;
            return content;
        }, cancellationToken);
        await CloseUploadAsync(repository, location, digest, cancellationToken);
    }

    /// <summary>
    /// Uploads content whose digest is known only once it has been produced (a layer compressed on the way), as
    /// dockerd pushes a layer: <c>POST</c> a session, one chunked <c>PATCH</c> of what <paramref name="write"/> writes,
    /// then <c>PUT ?digest=</c> of the bytes that went out. <paramref name="write"/> is called for each attempt.
    /// Returns the digest and size of what was uploaded.
    /// </summary>
    public async Task<(Digest Digest, long Size)> UploadProducedBlobAsync(string repository, Func<Stream, CancellationToken, Task> write,
        CancellationToken cancellationToken = default)
    {
        var location = await StartUploadAsync(repository, cancellationToken);
        ProducedContent? last = null;
        location = await PatchUploadAsync(repository, location, () => last = new ProducedContent(write), cancellationToken);
        var (digest, size) = last?.Sent ?? throw new RegistryException(500, "the registry answered the upload before it was sent");
        await CloseUploadAsync(repository, location, digest, cancellationToken);
        return (digest, size);
    }

    private async Task<Uri> StartUploadAsync(string repository, CancellationToken cancellationToken)
    {
        using var start = await SendAsync(() => new HttpRequestMessage(HttpMethod.Post, Url($"v2/{repository}/blobs/uploads/")) { Content = Empty() },
            [PushPull(repository)], small: true, cancellationToken);
        if (start.StatusCode != HttpStatusCode.Accepted) throw await ErrorFromAsync(start, "blob upload", cancellationToken);
        return Resolve(start.Headers.Location ?? throw new RegistryException(500, "the registry sent no Location for the upload session"));
    }

    private async Task<Uri> PatchUploadAsync(string repository, Uri location, Func<HttpContent> content, CancellationToken cancellationToken)
    {
        using var patch = await SendAsync(() =>
        {
            var body = content();
            body.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            return new HttpRequestMessage(HttpMethod.Patch, location) { Content = body };
        }, [PushPull(repository)], small: false, cancellationToken);
        if (patch.StatusCode != HttpStatusCode.Accepted && patch.StatusCode != HttpStatusCode.NoContent)
            throw await ErrorFromAsync(patch, "blob upload", cancellationToken);
        return patch.Headers.Location is { } next ? Resolve(next) : location;
    }

    private async Task CloseUploadAsync(string repository, Uri location, Digest digest, CancellationToken cancellationToken)
    {
        var separator = location.Query.Length > 1 ? "&" : "?";
        var close = new Uri(location + separator + "digest=" + Uri.EscapeDataString(digest.ToString()));
        using var put = await SendAsync(() => new HttpRequestMessage(HttpMethod.Put, close) { Content = Empty() }, [PushPull(repository)], small: true,
            cancellationToken);
        if (put.StatusCode != HttpStatusCode.Created) throw await ErrorFromAsync(put, "blob upload", cancellationToken);
    }

    /// <summary>PUTs a manifest under a tag (or digest); returns its digest, checked against the registry's <c>Docker-Content-Digest</c>.</summary>
    public async Task<Digest> PutManifestAsync(string repository, string reference, string mediaType, byte[] bytes,
        CancellationToken cancellationToken = default)
    {
        using var response = await SendAsync(() =>
        {
            var content = new ByteArrayContent(bytes);
            content.Headers.ContentType = new MediaTypeHeaderValue(mediaType);
            return new HttpRequestMessage(HttpMethod.Put, Url($"v2/{repository}/manifests/{reference}")) { Content = content };
        }, [PushPull(repository)], small: true, cancellationToken);
        if (response.StatusCode != HttpStatusCode.Created && response.StatusCode != HttpStatusCode.OK)
            throw await ErrorFromAsync(response, "manifest", cancellationToken);
        var digest = Digest.Of(bytes);
        if (response.Headers.TryGetValues("Docker-Content-Digest", out var values) && values.FirstOrDefault() is { } said && said != digest.ToString())
            throw new RegistryException(500, $"the registry stored the manifest as {said}, expected {digest}");
        return digest;
    }

    private Uri Url(string relative) => new(BaseUri, relative);

    private Uri Resolve(Uri location) => location.IsAbsoluteUri ? location : new Uri(BaseUri, location);

    private static ByteArrayContent Empty()
    {
        var content = new ByteArrayContent([]);
        content.Headers.ContentLength = 0;
        return content;
    }

    /// <summary>Sends with authorisation for the scopes; on 401 takes the new challenge, drops the cached token and tries once more.</summary>
    private async Task<HttpResponseMessage> SendAsync(Func<HttpRequestMessage> make, IReadOnlyList<string> scopes, bool small,
        CancellationToken cancellationToken)
    {
        for (var attempt = 0; ; attempt++)
        {
            var request = make();
            var tokenKey = await AuthorizeAsync(request, scopes, cancellationToken);
            var response = small
                ? await _client.SendSmallAsync(request, cancellationToken)
                : await _client.SendStreamingAsync(request, cancellationToken);
            if (response.StatusCode != HttpStatusCode.Unauthorized || attempt > 0) return response;
            var fresh = AuthChallenge.Parse(response.Headers.WwwAuthenticate.Select(h => h.ToString()));
            if (fresh.Count == 0) return response;
            _challenges = fresh;
            if (tokenKey is not null) _client.ForgetToken(tokenKey);
            response.Dispose();
        }
    }

    private async Task<string?> AuthorizeAsync(HttpRequestMessage request, IReadOnlyList<string> scopes, CancellationToken cancellationToken)
    {
        if (_challenges.FirstOrDefault(c => c.IsBearer) is { } bearer)
        {
            var (token, key) = await FetchTokenAsync(bearer, scopes, cancellationToken);
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            return key;
        }
        if (_challenges.Any(c => c.IsBasic) && Credentials is { HasBasic: true } c)
            request.Headers.Authorization = new AuthenticationHeaderValue("Basic", c.BasicHeaderValue);
        return null;
    }

    /// <summary>
    /// The token flow (distribution auth/token.md): <c>GET realm?service=&amp;scope=</c> with basic credentials, or
    /// the OAuth refresh-token form with an identity token. Tokens are cached per registry, user and scope set.
    /// </summary>
    internal async Task<(string Token, string Key)> FetchTokenAsync(AuthChallenge challenge, IReadOnlyList<string> scopes,
        CancellationToken cancellationToken, bool useCache = true)
    {
        if (Credentials?.RegistryToken is { Length: > 0 } registryToken) return (registryToken, "");
        // Keyed by the secret too (hashed): another password for the same user must not reuse a token.
        var secret = Credentials is null ? "" : Digest.Of(Encoding.UTF8.GetBytes($"{Credentials.Username}:{Credentials.Password}:{Credentials.IdentityToken}")).Short;
        var key = $"{Host}|{Credentials?.Username}|{secret}|{string.Join(' ', scopes)}";
        if (useCache && _client.TryGetToken(key, out var cached)) return (cached, key);

        var realm = challenge["realm"];
        if (realm is null || !Uri.TryCreate(realm, UriKind.Absolute, out var realmUri) || realmUri.Scheme is not ("http" or "https"))
            throw new RegistryException(401, $"unauthorized: the registry's token realm '{realm}' is not an http(s) URL");
        var service = challenge["service"];

        HttpRequestMessage request;
        if (Credentials?.IdentityToken is { Length: > 0 } refreshToken)
        {
            var form = new List<KeyValuePair<string, string>>
            {
                new("grant_type", "refresh_token"), new("refresh_token", refreshToken), new("client_id", "docker"),
            };
            if (service is not null) form.Add(new("service", service));
            if (scopes.Count > 0) form.Add(new("scope", string.Join(' ', scopes)));
            request = new HttpRequestMessage(HttpMethod.Post, realmUri) { Content = new FormUrlEncodedContent(form) };
        }
        else
        {
            var query = new StringBuilder();
            void Add(string name, string value) => query.Append(query.Length == 0 ? '?' : '&').Append(name).Append('=').Append(Uri.EscapeDataString(value));
            if (service is not null) Add("service", service);
            foreach (var scope in scopes) Add("scope", scope);
            if (Credentials is { HasBasic: true } c)
            {
                Add("account", c.Username!);
                Add("client_id", "docker");
            }
            var existing = realmUri.Query.Length > 1 ? realmUri.Query[1..] + "&" : "";
            var builder = new UriBuilder(realmUri) { Query = existing + (query.Length > 0 ? query.ToString(1, query.Length - 1) : "") };
            request = new HttpRequestMessage(HttpMethod.Get, builder.Uri);
            if (Credentials is { HasBasic: true } basic)
                request.Headers.Authorization = new AuthenticationHeaderValue("Basic", basic.BasicHeaderValue);
        }

        using var response = await _client.SendSmallAsync(request, cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            var error = await ErrorFromAsync(response, "token", cancellationToken);
            throw response.StatusCode == HttpStatusCode.Unauthorized || response.StatusCode == HttpStatusCode.Forbidden
                ? new RegistryException(401, error.Message.StartsWith("unauthorized", StringComparison.Ordinal) ? error.Message : "unauthorized: " + error.Message, error.Code)
                : error;
        }
        var body = await ReadCappedAsync(response.Content, 1 << 20, "token response", cancellationToken);
        string? token = null;
        var lifetime = TimeSpan.FromSeconds(60);
        try
        {
            using var doc = JsonDocument.Parse(body);
            var root = doc.RootElement;
            if (root.TryGetProperty("token", out var t) && t.ValueKind == JsonValueKind.String) token = t.GetString();
            if (string.IsNullOrEmpty(token) && root.TryGetProperty("access_token", out var a) && a.ValueKind == JsonValueKind.String) token = a.GetString();
            if (root.TryGetProperty("expires_in", out var e) && e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out var seconds) && seconds > 60)
                lifetime = TimeSpan.FromSeconds(seconds);
        }
        catch (JsonException)
        {
        }
        if (string.IsNullOrEmpty(token)) throw new RegistryException(401, "unauthorized: the token server sent no token");
        _client.CacheToken(key, token, lifetime);
        return (token, key);
    }

    /// <summary>
    /// The registry's error as dockerd words it: <c>{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}</c>
    /// becomes <c>manifest unknown: manifest unknown</c>; 401 stays 401, 404 stays 404, anything else is 500.
    /// </summary>
    internal static async Task<RegistryException> ErrorFromAsync(HttpResponseMessage response, string what, CancellationToken cancellationToken)
    {
        var status = (int)response.StatusCode;
        var apiStatus = status switch { 401 => 401, 403 => 403, 404 => 404, _ => 500 };
        byte[] body;
        try
        {
            body = await ReadCappedAsync(response.Content, 64 << 10, what, cancellationToken);
        }
        catch (RegistryException)
        {
            body = [];
        }
        try
        {
            using var doc = JsonDocument.Parse(body);
            if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("errors", out var errors)
                && errors.ValueKind == JsonValueKind.Array && errors.GetArrayLength() > 0)
            {
                var parts = new List<string>();
                string? firstCode = null;
                foreach (var e in errors.EnumerateArray().Take(5))
                {
                    var code = e.TryGetProperty("code", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString() ?? "" : "";
                    var message = e.TryGetProperty("message", out var m) && m.ValueKind == JsonValueKind.String ? m.GetString() ?? "" : "";
                    firstCode ??= code;
                    parts.Add($"{code.ToLowerInvariant().Replace('_', ' ')}: {message}");
                }
                return new RegistryException(apiStatus, string.Join(", ", parts), firstCode);
            }
        }
        catch (JsonException)
        {
        }
        if (status == 401) return new RegistryException(401, "unauthorized: authentication required", "UNAUTHORIZED");
        var text = Encoding.UTF8.GetString(body).Trim();
        if (text.Length > 200) text = text[..200] + "…";
        return new RegistryException(apiStatus,
            $"unexpected status {status} from {response.RequestMessage?.Method} {response.RequestMessage?.RequestUri}{(text.Length > 0 ? ": " + text : "")}");
    }

    internal static async Task<byte[]> ReadCappedAsync(HttpContent content, int max, string what, CancellationToken cancellationToken)
    {
        if (content.Headers.ContentLength is { } length && length > max) throw new RegistryException(500, $"{what} is larger than {max} bytes");
        await using var stream = await content.ReadAsStreamAsync(cancellationToken);
        var buffer = new MemoryStream();
        var chunk = new byte[1 << 14];
        int n;
        while ((n = await stream.ReadAsync(chunk, cancellationToken)) > 0)
        {
            buffer.Write(chunk, 0, n);
            if (buffer.Length > max) throw new RegistryException(500, $"{what} is larger than {max} bytes");
        }
        return buffer.ToArray();
    }

    /// <summary>A response body that disposes its response with it.</summary>
    private sealed class ResponseStream(HttpResponseMessage response, Stream inner) : ReadOnlyStream
    {
        public override long Position { get => inner.Position; set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);
        public override int Read(Span<byte> buffer) => inner.Read(buffer);
        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            inner.ReadAsync(buffer, offset, count, cancellationToken);
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            inner.ReadAsync(buffer, cancellationToken);

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
                response.Dispose();
            }
            base.Dispose(disposing);
        }
    }

    /// <summary>A request body written by a producer (no length: sent chunked), hashed and counted as it goes out.</summary>
    private sealed class ProducedContent(Func<Stream, CancellationToken, Task> write) : HttpContent
    {
        /// <summary>Digest and size of the body, once it was written whole.</summary>
        public (Digest Digest, long Size)? Sent { get; private set; }

        protected override Task SerializeToStreamAsync(Stream stream, System.Net.TransportContext? context) =>
            SerializeToStreamAsync(stream, context, CancellationToken.None);

        protected override async Task SerializeToStreamAsync(Stream stream, System.Net.TransportContext? context, CancellationToken cancellationToken)
        {
            using var hashing = new HashingWriteStream(stream);
            await write(hashing, cancellationToken);
            Sent = (hashing.Finish(), hashing.BytesWritten);
        }

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }

    /// <summary>Passes writes on to a stream it does not own, hashing and counting them.</summary>
    private sealed class HashingWriteStream(Stream inner) : Stream
    {
        private readonly System.Security.Cryptography.IncrementalHash _hash =
            System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);

        public long BytesWritten { get; private set; }
        public Digest Finish() => Digest.FromHash(_hash.GetHashAndReset());

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => BytesWritten; set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            _hash.AppendData(buffer);
            BytesWritten += buffer.Length;
            inner.Write(buffer);
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            _hash.AppendData(buffer.Span);
            BytesWritten += buffer.Length;
            return inner.WriteAsync(buffer, cancellationToken);
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) _hash.Dispose();
            base.Dispose(disposing);
        }
    }

    /// <summary>Reports how many bytes were read through it (for the push progress).</summary>
    private sealed class ProgressReadStream(Stream inner, Action<long>? progress) : ReadOnlyStream
    {
        private long _read;
        public override long Position { get => _read; set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => Count(inner.Read(buffer, offset, count));
        public override int Read(Span<byte> buffer) => Count(inner.Read(buffer));
        public override async Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            Count(await inner.ReadAsync(buffer.AsMemory(offset, count), cancellationToken));
        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            Count(await inner.ReadAsync(buffer, cancellationToken));

        private int Count(int n)
        {
            _read += n;
            if (n > 0) progress?.Invoke(_read);
            return n;
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
