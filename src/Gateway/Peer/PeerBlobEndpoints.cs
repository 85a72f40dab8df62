using Flotilla.Gateway.Http;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Storage;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Flotilla.Gateway.Peer;

/// <summary>
/// Host-to-host image distribution on the Docker API listener: another Flotilla host fetches a blob of this
/// host's content store by digest (config, manifest, or an uncompressed layer by DiffID) and verifies it
/// itself. The path is outside Docker's (<c>/_flotilla/…</c> has no <c>/v1.NN</c> prefix), so the version
/// middleware passes it through.
/// </summary>
public static class PeerBlobEndpoints
{
    public const string BlobsPath = "/_flotilla/peer/v1/blobs/";
    private const int CopyBufferSize = 1 << 20;

    public static void MapPeerBlobEndpoints(this IEndpointRouteBuilder endpoints) =>
        endpoints.MapMethods(BlobsPath + "{digest}", [HttpMethods.Get, HttpMethods.Head], ServeAsync);

    // GET|HEAD /_flotilla/peer/v1/blobs/sha256:<hex>
    private static async Task ServeAsync(HttpContext context, string digest)
    {
        if (!Digest.TryParse(digest, out var parsed))
        {
            await JsonReply.ErrorAsync(context, StatusCodes.Status400BadRequest, $"invalid digest {Quote(digest)}: expected sha256:<64 lowercase hex>");
            return;
        }
        var store = context.RequestServices.GetService<NodeImageStore>();
        FileStream? blob = null;
        try
        {
            blob = store is null ? null
                : new FileStream(store.Content.PathOf(parsed), FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1 << 16,
                    FileOptions.Asynchronous | FileOptions.SequentialScan);
        }
        catch (FileNotFoundException)
        {
            // Absent, or collected between the peer's look-up and now: the peer tries another host.
        }
        if (blob is null)
        {
            await JsonReply.ErrorAsync(context, StatusCodes.Status404NotFound, $"blob {parsed} is not stored on this host");
            return;
        }
        await using (blob)
        {
            var response = context.Response;
            response.StatusCode = StatusCodes.Status200OK;
            response.ContentType = "application/octet-stream";
            response.ContentLength = blob.Length;
            response.Headers["Docker-Content-Digest"] = parsed.ToString();
            if (HttpMethods.IsHead(context.Request.Method)) return;
            await blob.CopyToAsync(response.Body, CopyBufferSize, context.RequestAborted);
        }
    }

    private static string Quote(string text) => "\"" + (text.Length > 80 ? text[..80] + "…" : text) + "\"";
}
