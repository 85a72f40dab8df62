using System.Text.Json;
using Flotilla.Cluster.Registry;
using Flotilla.Contracts;
using Flotilla.Contracts.Registry;
using Flotilla.NodeRuntime.Registry;
using Flotilla.NodeRuntime.Storage;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Primitives;

namespace Flotilla.Gateway.Registry;

/// <summary>
/// The OCI distribution API (<c>/v2/…</c>): HTTP in, use cases of <see cref="RegistryService"/> out. The
/// blob path (uploads, downloads) is file I/O on <see cref="RegistryBlobStore"/>, streamed both ways.
/// </summary>
public static class RegistryApi
{
    public const string DigestHeader = "Docker-Content-Digest";
    public const string UploadUuidHeader = "Docker-Upload-UUID";
    public const string OciIndexMediaType = "application/vnd.oci.image.index.v1+json";

    /// <summary>Serves the request the auth middleware parsed and authorized (<see cref="RegistryRequest"/>); never re-reads the path.</summary>
    public static Task HandleAsync(HttpContext c)
    {
        var request = RegistryRequest.Of(c);
        var route = request.Route;
        return request.Operation switch
        {
            RegistryOperation.Base => WriteJsonAsync(c, new { }),
            RegistryOperation.Catalog => CatalogAsync(c),
            RegistryOperation.GetBlob => GetBlobAsync(c, route!.Name, route.Argument!),
            RegistryOperation.DeleteBlob => DeleteBlobAsync(c, route!.Name, route.Argument!),
            RegistryOperation.StartUpload => StartUploadAsync(c, route!.Name, request.MountSource),
            RegistryOperation.UploadStatus => UploadStatusAsync(c, route!.Name, route.Argument!),
            RegistryOperation.PatchUpload => PatchUploadAsync(c, route!.Name, route.Argument!),
            RegistryOperation.CompleteUpload => CompleteUploadAsync(c, route!.Name, route.Argument!),
            RegistryOperation.CancelUpload => CancelUploadAsync(c, route!.Name, route.Argument!),
            RegistryOperation.GetManifest => GetManifestAsync(c, route!.Name, route.Argument!),
            RegistryOperation.PutManifest => PutManifestAsync(c, route!.Name, route.Argument!),
            RegistryOperation.DeleteManifest => DeleteManifestAsync(c, route!.Name, route.Argument!),
            RegistryOperation.Tags => TagsAsync(c, route!.Name),
            RegistryOperation.Referrers => ReferrersAsync(c, route!.Name, route.Argument!),
            _ => Unsupported(c),
        };
    }

    // ---- blobs ------------------------------------------------------------------------------

    private static async Task GetBlobAsync(HttpContext c, string name, string digestText)
    {
        var digest = ParseDigest(digestText);
        if (await Service(c).BlobSizeAsync(name, digest, c.RequestAborted) is not { } size)
        {
            await RegistryErrors.WriteAsync(c, RegistryErrorCodes.BlobUnknown, "blob unknown to registry", digestText);
            return;
        }
        var response = c.Response;
        response.Headers[DigestHeader] = digest.ToString();
        response.Headers.AcceptRanges = "bytes";
        response.Headers.ETag = $"\"{digest}\"";
        response.Headers.CacheControl = "max-age=31536000";
        response.ContentType = "application/octet-stream";
        long offset = 0, length = size;
        if (ByteRanges.TryParseRequest(c.Request.Headers.Range, size, out var from, out var count, out var satisfiable))
        {
            if (!satisfiable)
            {
                response.Headers.ContentRange = $"bytes */{size}";
                await RegistryErrors.WriteAsync(c, RegistryErrorCodes.RangeInvalid, "requested range not satisfiable", c.Request.Headers.Range.ToString());
                return;
            }
            (offset, length) = (from, count);
            response.StatusCode = StatusCodes.Status206PartialContent;
            response.Headers.ContentRange = $"bytes {from}-{from + count - 1}/{size}";
        }
        response.ContentLength = length;
        if (HttpMethods.IsHead(c.Request.Method) || length == 0) return;
        try
        {
            await Blobs(c).CopyToAsync(digest, offset, length, response.Body, c.RequestAborted);
        }
        catch (FileNotFoundException) when (!response.HasStarted)
        {
            // Swept by GC between the lookup and the read.
            response.Headers.Remove(DigestHeader);
            response.ContentLength = null;
            await RegistryErrors.WriteAsync(c, RegistryErrorCodes.BlobUnknown, "blob unknown to registry", digestText);
        }
    }

    private static async Task DeleteBlobAsync(HttpContext c, string name, string digestText)
    {
        await Service(c).UnlinkBlobAsync(name, ParseDigest(digestText), Origin(c));
        c.Response.StatusCode = StatusCodes.Status202Accepted;
        c.Response.ContentLength = 0;
    }

    // ---- uploads ----------------------------------------------------------------------------

    /// <param name="mountSource">The <c>from</c> of a mount the caller may read (see the auth middleware); null: no mount.</param>
    private static async Task StartUploadAsync(HttpContext c, string name, string? mountSource)
    {
        var query = c.Request.Query;
        if (query.TryGetValue("mount", out var mount))
        {
            var digest = ParseDigest(mount.ToString());
            // Without a readable source repository the client uploads: a digest alone opens no other repository.
            if (mountSource is not null && await Service(c).MountAsync(name, digest, mountSource, Origin(c), c.RequestAborted) is not null)
            {
                BlobCreated(c, name, digest);
                return;
            }
        }
        else if (query.TryGetValue("digest", out var digestValue))
        {
            var digest = ParseDigest(digestValue.ToString());
            // Held until the blob is linked: a GC sweep in between must not take it.
            using var pin = Blobs(c).Pin(digest);
            var blob = await UploadOrInvalidAsync(() => Blobs(c).UploadAsync(name, c.Request.Body, digest, c.Request.ContentLength, c.RequestAborted));
            await Service(c).LinkBlobAsync(name, blob, "upload", Origin(c));
            BlobCreated(c, name, digest);
            return;
        }
        var session = Blobs(c).StartUpload(name);
        UploadAccepted(c, name, session, StatusCodes.Status202Accepted);
    }

    private static async Task UploadStatusAsync(HttpContext c, string name, string id)
    {
        var session = await FindUploadAsync(c, name, id);
        UploadAccepted(c, name, session, StatusCodes.Status204NoContent);
    }

    private static async Task PatchUploadAsync(HttpContext c, string name, string id)
    {
        var session = await FindUploadAsync(c, name, id);
        var (start, length) = ChunkOf(c);
        try
        {
            await Blobs(c).AppendAsync(session, c.Request.Body, start, length, c.RequestAborted);
        }
        catch (UploadRangeException ex)
        {
            await RangeRefusedAsync(c, name, session, ex);
            return;
        }
        catch (UploadUnknownException)
        {
            throw UploadUnknown(id);
        }
        UploadAccepted(c, name, session, StatusCodes.Status202Accepted);
    }

    private static async Task CompleteUploadAsync(HttpContext c, string name, string id)
    {
        var digest = ParseDigest(c.Request.Query["digest"].ToString());
        var session = await FindUploadAsync(c, name, id);
        var (start, _) = ChunkOf(c);
        var hasBody = c.Request.ContentLength is > 0 || (c.Request.ContentLength is null && c.Request.Headers.TransferEncoding.Count > 0);
        // Held until the blob is linked: a GC sweep in between must not take it.
        using var pin = Blobs(c).Pin(digest);
        Descriptor blob;
        try
        {
            blob = await UploadOrInvalidAsync(() => Blobs(c).CompleteAsync(session, digest, hasBody ? c.Request.Body : null, hasBody ? start : null,
                c.RequestAborted));
        }
        catch (UploadRangeException ex)
        {
            await RangeRefusedAsync(c, name, session, ex);
            return;
        }
        catch (UploadUnknownException)
        {
            throw UploadUnknown(id);
        }
        await Service(c).LinkBlobAsync(name, blob, "upload", Origin(c));
        BlobCreated(c, name, digest);
    }

    private static async Task CancelUploadAsync(HttpContext c, string name, string id)
    {
        var session = await FindUploadAsync(c, name, id);
        await Blobs(c).CancelAsync(session);
        c.Response.StatusCode = StatusCodes.Status204NoContent;
    }

    private static async Task<Descriptor> UploadOrInvalidAsync(Func<Task<Descriptor>> upload)
    {
        try
        {
            return await upload();
        }
        catch (DigestMismatchException ex)
        {
            throw new RegistryException(RegistryErrorCodes.DigestInvalid, "provided digest did not match uploaded content",
                $"expected {ex.Expected}, got {ex.Actual}");
        }
    }

    private static async Task<UploadSession> FindUploadAsync(HttpContext c, string name, string id) =>
        await Blobs(c).FindUploadAsync(id, name, c.RequestAborted) ?? throw UploadUnknown(id);

    private static RegistryException UploadUnknown(string id) => new(RegistryErrorCodes.BlobUploadUnknown, "blob upload unknown to registry", id);

    /// <summary>The chunk's announced start (<c>Content-Range</c>) and length (<c>Content-Length</c>, which must agree).</summary>
    private static (long? Start, long? Length) ChunkOf(HttpContext c)
    {
        var header = c.Request.Headers.ContentRange.ToString();
        var length = c.Request.ContentLength;
        if (string.IsNullOrEmpty(header)) return (null, length);
        if (!ByteRanges.TryParseChunk(header, out var start, out var end))
            throw new RegistryException(RegistryErrorCodes.BlobUploadInvalid, "invalid Content-Range", header);
        var size = end - start + 1;
        if (length is { } l && l != size)
            throw new RegistryException(RegistryErrorCodes.SizeInvalid, "Content-Length does not match Content-Range", $"{l} != {size}");
        return (start, size);
    }

    private static void UploadAccepted(HttpContext c, string name, UploadSession session, int status)
    {
        var response = c.Response;
        response.StatusCode = status;
        response.Headers.Location = $"/v2/{name}/blobs/uploads/{session.Id}";
        response.Headers[UploadUuidHeader] = session.Id;
        response.Headers.Range = RangeOf(session.Offset);
        response.ContentLength = 0;
    }

    private static Task RangeRefusedAsync(HttpContext c, string name, UploadSession session, UploadRangeException ex)
    {
        c.Response.Headers.Location = $"/v2/{name}/blobs/uploads/{session.Id}";
        c.Response.Headers.Range = RangeOf(ex.Offset);
        return RegistryErrors.WriteAsync(c, RegistryErrorCodes.BlobUploadInvalid, ex.Message, null, StatusCodes.Status416RangeNotSatisfiable);
    }

    /// <summary><c>0-&lt;last byte&gt;</c>; <c>0-0</c> for an empty upload, as distribution does.</summary>
    private static string RangeOf(long offset) => $"0-{Math.Max(offset - 1, 0)}";

    private static void BlobCreated(HttpContext c, string name, Digest digest)
    {
        c.Response.StatusCode = StatusCodes.Status201Created;
        c.Response.Headers.Location = $"/v2/{name}/blobs/{digest}";
        c.Response.Headers[DigestHeader] = digest.ToString();
        c.Response.ContentLength = 0;
    }

    // ---- manifests --------------------------------------------------------------------------

    private static async Task GetManifestAsync(HttpContext c, string name, string reference)
    {
        if (reference.Contains(':')) ParseDigest(reference);
        var manifest = await Service(c).FindManifestAsync(name, reference, c.RequestAborted);
        if (manifest is null)
        {
            await RegistryErrors.WriteAsync(c, RegistryErrorCodes.ManifestUnknown, "manifest unknown", reference);
            return;
        }
        var response = c.Response;
        response.ContentType = manifest.MediaType;
        response.Headers[DigestHeader] = manifest.Digest;
        response.Headers.ETag = $"\"{manifest.Digest}\"";
        response.ContentLength = manifest.Size;
        if (HttpMethods.IsHead(c.Request.Method)) return;
        await response.SendFileAsync(manifest.Path, 0, manifest.Size, c.RequestAborted);
    }

    private static async Task PutManifestAsync(HttpContext c, string name, string reference)
    {
        var body = c.Request.ContentLength > RegistryManifest.MaxSize ? null
            : await ReadLimitedAsync(c.Request.Body, RegistryManifest.MaxSize, c.RequestAborted);
        if (body is null)
        {
            await RegistryErrors.WriteAsync(c, RegistryErrorCodes.SizeInvalid, $"manifest is larger than {RegistryManifest.MaxSize} bytes",
                null, StatusCodes.Status413PayloadTooLarge);
            return;
        }
        var (digest, manifest) = await Service(c).PushManifestAsync(name, reference, body, c.Request.ContentType, Origin(c), c.RequestAborted);
        var response = c.Response;
        response.StatusCode = StatusCodes.Status201Created;
        response.Headers.Location = $"/v2/{name}/manifests/{digest}";
        response.Headers[DigestHeader] = digest.ToString();
        if (manifest.Subject is { } subject) response.Headers["OCI-Subject"] = subject;
        response.ContentLength = 0;
    }

    private static async Task DeleteManifestAsync(HttpContext c, string name, string reference)
    {
        if (reference.Contains(':')) await Service(c).DeleteManifestAsync(name, ParseDigest(reference), Origin(c));
        else await Service(c).DeleteTagAsync(name, reference, Origin(c));
        c.Response.StatusCode = StatusCodes.Status202Accepted;
        c.Response.ContentLength = 0;
    }

    /// <summary>The whole body, or null when it is longer than <paramref name="limit"/>.</summary>
    private static async Task<byte[]?> ReadLimitedAsync(Stream body, int limit, CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        var chunk = new byte[81920];
        int read;
        while ((read = await body.ReadAsync(chunk, cancellationToken)) > 0)
        {
            if (buffer.Length + read > limit) return null;
            buffer.Write(chunk, 0, read);
        }
        return buffer.ToArray();
    }

    // ---- discovery --------------------------------------------------------------------------

    private static async Task TagsAsync(HttpContext c, string name)
    {
        var tags = await Service(c).TagsAsync(name, c.RequestAborted);
        if (tags is null)
        {
            await RegistryErrors.WriteAsync(c, RegistryErrorCodes.NameUnknown, "repository name not known to registry", name);
            return;
        }
        var page = Paginate(c, tags, $"/v2/{name}/tags/list");
        await WriteJsonAsync(c, new TagList(name, page));
    }

    private static async Task CatalogAsync(HttpContext c)
    {
        var names = await Service(c).CatalogAsync(c.RequestAborted);
        await WriteJsonAsync(c, new Catalog(Paginate(c, names, "/v2/_catalog")));
    }

    /// <summary><c>n</c> and <c>last</c> over an ordered list, with a <c>Link</c> to the next page when there is one.</summary>
    private static IReadOnlyList<string> Paginate(HttpContext c, IReadOnlyList<string> all, string basePath)
    {
        var query = c.Request.Query;
        int? n = null;
        if (query.TryGetValue("n", out var nText) && !StringValues.IsNullOrEmpty(nText))
        {
            if (!int.TryParse(nText.ToString(), out var parsed) || parsed < 0)
                throw new RegistryException(RegistryErrorCodes.PaginationNumberInvalid, "invalid number of results requested", nText.ToString());
            n = parsed;
        }
        var last = query["last"].ToString();
        var after = last.Length == 0 ? all : all.Where(t => string.CompareOrdinal(t, last) > 0).ToList();
        if (n is not { } take || after.Count <= take) return n == 0 ? [] : after;
        var page = after.Take(take).ToList();
        if (take > 0)
            c.Response.Headers.Link = $"<{basePath}?n={take}&last={Uri.EscapeDataString(page[^1])}>; rel=\"next\"";
        return page;
    }

    private static async Task ReferrersAsync(HttpContext c, string name, string digestText)
    {
        var subject = ParseDigest(digestText);
        var artifactType = c.Request.Query["artifactType"].ToString();
        var filter = artifactType.Length > 0 ? artifactType : null;
        var referrers = await Service(c).ReferrersAsync(name, subject, filter, c.RequestAborted);
        if (filter is not null) c.Response.Headers["OCI-Filters-Applied"] = "artifactType";
        await WriteJsonAsync(c, new ReferrersIndex(2, OciIndexMediaType,
            referrers.Select(r => new ReferrerDescriptor(r.MediaType, r.Digest, r.Size, r.ArtifactType, r.Annotations)).ToList()),
            OciIndexMediaType);
    }

    // ---- helpers ----------------------------------------------------------------------------

    private static RegistryService Service(HttpContext c) => c.RequestServices.GetRequiredService<RegistryService>();
    private static RegistryBlobStore Blobs(HttpContext c) => c.RequestServices.GetRequiredService<RegistryBlobStore>();


    private static Digest ParseDigest(string text) =>
        Digest.TryParse(text, out var digest) ? digest : throw new RegistryException(RegistryErrorCodes.DigestInvalid, "invalid digest", text);

    /// <summary>
    /// Who is asking: the auth middleware's user, or anonymous. The correlation id is this request's own; a client's
    /// X-Request-Id is only the causation id (see <see cref="Http.ClientRequestId"/>).
    /// </summary>
    public static RequestOrigin Origin(HttpContext c) =>
        new(c.User.Identity?.Name ?? "anonymous", c.TraceIdentifier, Http.ClientRequestId.Parse(c.Request.Headers[Http.ClientRequestId.Header].ToString()));

    private static Task Unsupported(HttpContext c) =>
        RegistryErrors.WriteAsync(c, RegistryErrorCodes.Unsupported, $"{c.Request.Method} is not supported here", c.Request.Path.Value);

    internal static async Task WriteJsonAsync<T>(HttpContext c, T body, string contentType = "application/json")
    {
        var bytes = JsonSerializer.SerializeToUtf8Bytes(body, RegistryErrors.Json);
        c.Response.ContentType = contentType;
        c.Response.ContentLength = bytes.Length;
        if (!HttpMethods.IsHead(c.Request.Method)) await c.Response.Body.WriteAsync(bytes, c.RequestAborted);
    }

    private sealed record TagList(string Name, IReadOnlyList<string> Tags);

    private sealed record Catalog(IReadOnlyList<string> Repositories);

    private sealed record ReferrersIndex(int SchemaVersion, string MediaType, IReadOnlyList<ReferrerDescriptor> Manifests);

    private sealed record ReferrerDescriptor(string MediaType, string Digest, long Size, string? ArtifactType,
        IReadOnlyDictionary<string, string>? Annotations);
}
