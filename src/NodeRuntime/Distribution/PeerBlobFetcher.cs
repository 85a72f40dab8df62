using System.Net;
using Flotilla.NodeRuntime.Storage;

namespace Flotilla.NodeRuntime.Distribution;

/// <summary>Another Flotilla host that may serve blobs: its node name and API listener (<c>host:port</c>).</summary>
public sealed record PeerEndpoint(string Node, string Endpoint);

/// <summary>
/// One blob that is now in the content store. <paramref name="From"/> is the peer that served it (null when it was
/// already here); <paramref name="Joined"/> says it came through a fetch another caller had started.
/// </summary>
public sealed record BlobFetch(Digest Digest, string? From, long Bytes, bool Joined);

/// <summary>No peer could serve a blob; <see cref="Attempts"/> says, per peer, why.</summary>
public sealed class PeerFetchException(Digest digest, IReadOnlyList<string> attempts)
    : Exception($"blob {digest}: " + string.Join("; ", attempts))
{
    public Digest Digest { get; } = digest;
    public IReadOnlyList<string> Attempts { get; } = attempts;
}

/// <summary>
/// Copies blobs from other Flotilla hosts (<c>GET /_flotilla/peer/v1/blobs/{digest}</c> on their API listener)
/// into this host's content store. The bytes are hashed on the way in and only published when they match the
/// digest (<see cref="ContentStore.IngestAsync(Stream,string,Digest?,long?,CancellationToken)"/>), so a peer
/// that serves wrong or short content leaves nothing behind and the next peer is asked. One fetch per digest
/// at a time in this process: callers that want a blob already on its way wait for that transfer.
/// </summary>
public sealed class PeerBlobFetcher : IDisposable
{
    public const string BlobsPath = "/_flotilla/peer/v1/blobs/";

    /// <summary>A peer must start answering within this time…</summary>
    public static readonly TimeSpan HeadersTimeout = TimeSpan.FromSeconds(30);

    /// <summary>…and then deliver some bytes at least this often, or the next peer is asked.</summary>
    public static readonly TimeSpan StallTimeout = TimeSpan.FromSeconds(30);

    private readonly ContentStore _store;
    private readonly HttpClient _http;
    private readonly CancellationTokenSource _lifetime = new();
    private readonly Dictionary<Digest, Task<BlobFetch>> _inFlight = [];

    /// <param name="configureHandler">Sets up TLS for <c>https://</c> peers (the cluster certificate and CA check).</param>
    public PeerBlobFetcher(ContentStore store, Action<SocketsHttpHandler>? configureHandler = null)
    {
        _store = store;
        var handler = new SocketsHttpHandler
        {
            ConnectTimeout = TimeSpan.FromSeconds(5),
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            UseCookies = false,
            UseProxy = false,
        };
        configureHandler?.Invoke(handler);
        _http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
    }

    /// <summary>A peer's registered endpoint: <c>https://host:port</c> (cluster TLS) or bare <c>host:port</c> (plain).</summary>
    public static string BaseUrl(string endpoint) =>
        endpoint.StartsWith("https://", StringComparison.OrdinalIgnoreCase) ? endpoint.TrimEnd('/') : "http://" + endpoint;

    /// <summary>
    /// Makes the blob present, asking <paramref name="peers"/> in order. Cancelling stops the wait, not a transfer
    /// other callers may be waiting for (it finishes or fails on its own and is useful either way).
    /// </summary>
    public async Task<BlobFetch> FetchAsync(Digest digest, IReadOnlyList<PeerEndpoint> peers, CancellationToken cancellationToken)
    {
        if (_store.Exists(digest)) return new BlobFetch(digest, null, 0, Joined: false);
        Task<BlobFetch> transfer;
        var joined = true;
        lock (_inFlight)
        {
            if (!_inFlight.TryGetValue(digest, out transfer!))
            {
                joined = false;
                transfer = _inFlight[digest] = TransferAsync(digest, peers);
            }
        }
        var result = await transfer.WaitAsync(cancellationToken);
        return joined ? result with { Joined = true } : result;
    }

    private async Task<BlobFetch> TransferAsync(Digest digest, IReadOnlyList<PeerEndpoint> peers)
    {
        await Task.Yield(); // registered in _inFlight before any work runs
        try
        {
            var attempts = new List<string>();
            foreach (var peer in peers)
            {
                if (_store.Exists(digest)) return new BlobFetch(digest, null, 0, Joined: false);
                try
                {
                    var bytes = await FetchFromAsync(peer, digest, _lifetime.Token);
                    return new BlobFetch(digest, peer.Node, bytes, Joined: false);
                }
                catch (PeerRefusedException ex)
                {
                    attempts.Add($"{peer.Node} ({peer.Endpoint}): {ex.Message}");
                }
                catch (Exception ex) when (!_lifetime.IsCancellationRequested && ex is HttpRequestException or IOException
                                               or UriFormatException or InvalidDataException or DigestMismatchException or OperationCanceledException)
                {
                    attempts.Add($"{peer.Node} ({peer.Endpoint}): {Describe(ex)}");
                }
            }
            throw new PeerFetchException(digest, attempts.Count == 0 ? ["no peer to ask"] : attempts);
        }
        finally
        {
            lock (_inFlight) _inFlight.Remove(digest);
        }
    }

    private async Task<long> FetchFromAsync(PeerEndpoint peer, Digest digest, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(HeadersTimeout);
        using var request = new HttpRequestMessage(HttpMethod.Get, $"{BaseUrl(peer.Endpoint)}{BlobsPath}{digest}");
        using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, deadline.Token);
        if (response.StatusCode == HttpStatusCode.NotFound) throw new PeerRefusedException("does not have it");
        if (!response.IsSuccessStatusCode) throw new PeerRefusedException($"answered {(int)response.StatusCode} {response.ReasonPhrase}");
        if (response.Headers.TryGetValues("Docker-Content-Digest", out var announced) && announced.FirstOrDefault() is { } a && a != digest.ToString())
            throw new PeerRefusedException($"announced digest {a}");
        var length = response.Content.Headers.ContentLength;
        await using var body = new StallGuard(await response.Content.ReadAsStreamAsync(deadline.Token), deadline);
        var stored = await _store.IngestAsync(body, "application/octet-stream", digest, length, deadline.Token);
        return stored.Size;
    }

    private static string Describe(Exception ex) => ex switch
    {
        OperationCanceledException => "timed out",
        DigestMismatchException m => $"served content with digest {m.Actual}",
        _ => ex.Message,
    };

    public void Dispose()
    {
        // Transfers still running see the cancellation; the source itself has no timer to free, so it is not disposed
        // under them.
        _lifetime.Cancel();
        _http.Dispose();
    }

    /// <summary>A peer's answer that means "ask someone else" (absent, an error status, another digest).</summary>
    private sealed class PeerRefusedException(string message) : Exception(message);

    /// <summary>Gives every read <see cref="StallTimeout"/> to return: a peer that stops sending is given up on.</summary>
    private sealed class StallGuard(Stream inner, CancellationTokenSource deadline) : Stream
    {
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            deadline.CancelAfter(StallTimeout);
            return await inner.ReadAsync(buffer, cancellationToken);
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("asynchronous reads only");
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }

        public override async ValueTask DisposeAsync()
        {
            await inner.DisposeAsync();
            await base.DisposeAsync();
        }
    }
}
