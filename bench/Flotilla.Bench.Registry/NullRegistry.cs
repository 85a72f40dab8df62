using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Flotilla.Bench.Registry;

/// <summary>
/// A measuring instrument, not a registry: it speaks just enough of the distribution protocol for one skopeo push or
/// pull and does no work of its own. Pushes to <c>/v2/null/…</c> are read and thrown away (no digest check, no
/// storage: every blob is unknown, so skopeo uploads it); pulls from <c>/v2/layout/&lt;n&gt;/…</c> are answered with
/// the files of the benchmark's OCI layout n, sent as they are. The time skopeo takes against it is the client's own
/// floor over HTTP on loopback: no registry can be timed faster with this client, which bounds the ratio any registry
/// can reach against distribution in this benchmark.
/// </summary>
internal sealed partial class NullRegistry : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly IReadOnlyList<OciLayoutImage> _layouts;

    private NullRegistry(WebApplication app, IReadOnlyList<OciLayoutImage> layouts, int port)
    {
        _app = app;
        _layouts = layouts;
        Port = port;
    }

    public int Port { get; }

    public static async Task<NullRegistry> StartAsync(int port, IReadOnlyList<OciLayoutImage> layouts, CancellationToken ct)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = null);
        var app = builder.Build();
        var registry = new NullRegistry(app, layouts, port);
        app.Run(registry.HandleAsync);
        await app.StartAsync(ct);
        return registry;
    }

    [GeneratedRegex("^/v2/(?<name>.+?)/(?<kind>blobs/uploads|blobs|manifests)/?(?<rest>[^/]*)$")]
    private static partial Regex RoutePattern();

    private async Task HandleAsync(HttpContext context)
    {
        var request = context.Request;
        var response = context.Response;
        response.Headers["Docker-Distribution-API-Version"] = "registry/2.0";
        if (request.Path.Value is "/v2/" or "/v2")
        {
            await response.WriteAsync("{}");
            return;
        }
        var match = RoutePattern().Match(request.Path.Value ?? "");
        if (!match.Success)
        {
            response.StatusCode = 404;
            return;
        }
        var (name, kind, rest) = (match.Groups["name"].Value, match.Groups["kind"].Value, match.Groups["rest"].Value);
        var layout = LayoutOf(name);
        switch (kind, request.Method)
        {
            case ("blobs/uploads", "POST"):
                response.StatusCode = 202;
                response.Headers.Location = $"/v2/{name}/blobs/uploads/{Guid.NewGuid():N}";
                response.Headers["Range"] = "0-0";
                return;
            case ("blobs/uploads", "PATCH"):
                {
                    var read = await DrainAsync(request.Body, context.RequestAborted);
                    response.StatusCode = 202;
                    response.Headers.Location = $"/v2/{name}/blobs/uploads/{rest}";
                    response.Headers["Range"] = $"0-{Math.Max(0, read - 1)}";
                    return;
                }
            case ("blobs/uploads", "PUT"):
                {
                    await DrainAsync(request.Body, context.RequestAborted);
                    var digest = request.Query["digest"].ToString();
                    response.StatusCode = 201;
                    response.Headers.Location = $"/v2/{name}/blobs/{digest}";
                    response.Headers["Docker-Content-Digest"] = digest;
                    return;
                }
            case ("manifests", "PUT"):
                {
                    var body = new MemoryStream();
                    await request.Body.CopyToAsync(body, context.RequestAborted);
                    var digest = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(body.ToArray()));
                    response.StatusCode = 201;
                    response.Headers.Location = $"/v2/{name}/manifests/{digest}";
                    response.Headers["Docker-Content-Digest"] = digest;
                    return;
                }
            case ("blobs", "GET" or "HEAD") when layout is not null && BlobPath(layout, rest) is { } path:
                response.Headers["Docker-Content-Digest"] = rest;
                response.ContentType = "application/octet-stream";
                response.ContentLength = new FileInfo(path).Length;
                if (request.Method == "GET") await response.SendFileAsync(path, context.RequestAborted);
                return;
            case ("manifests", "GET" or "HEAD") when layout is not null:
                {
                    var path = BlobPath(layout, layout.ManifestDigest)!;
                    response.Headers["Docker-Content-Digest"] = layout.ManifestDigest;
                    response.ContentType = "application/vnd.oci.image.manifest.v1+json";
                    response.ContentLength = new FileInfo(path).Length;
                    if (request.Method == "GET") await response.SendFileAsync(path, context.RequestAborted);
                    return;
                }
            default:
                response.StatusCode = 404;
                response.ContentType = "application/json";
                await response.WriteAsync("""{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}""");
                return;
        }
    }

    /// <summary>Repository <c>layout/&lt;n&gt;</c> serves layout n; anything else is the discarding push side.</summary>
    private OciLayoutImage? LayoutOf(string name) =>
        name.StartsWith("layout/", StringComparison.Ordinal) && int.TryParse(name["layout/".Length..], out var n) && n >= 0 && n < _layouts.Count
            ? _layouts[n]
            : null;

    private static string? BlobPath(OciLayoutImage layout, string digest)
    {
        if (!digest.StartsWith("sha256:", StringComparison.Ordinal) || digest.Length != 71 || !digest[7..].All(char.IsAsciiHexDigitLower)) return null;
        var path = Path.Combine(layout.Dir, "blobs", "sha256", digest[7..]);
        return File.Exists(path) ? path : null;
    }

    private static async Task<long> DrainAsync(Stream body, CancellationToken ct)
    {
        var buffer = new byte[1 << 16];
        long total = 0;
        int n;
        while ((n = await body.ReadAsync(buffer, ct)) > 0) total += n;
        return total;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
