using Flotilla.Cluster.Registry;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Flotilla.Gateway.Http;

/// <summary>
/// How large a request body each listener's endpoints take. Kestrel's own limit is off (image imports and loads,
/// registry blob uploads and <c>docker cp</c> into a container are archives of any size, streamed to disk), so
/// every other endpoint gets a cap here: a JSON body is parsed in memory, and a 300 MB create once cost ~960 MB.
/// A declared length over the cap is refused before anything is read; a chunked body is cut off by Kestrel as
/// soon as it passes the cap (413 either way, in the listener's error shape).
/// </summary>
public static class RequestBodyLimits
{
    /// <summary>A container's create (and commit, exec, update): its config with environment, command, labels, binds.</summary>
    public const long DockerJson = 1024 * 1024;

    /// <summary>The native API's small JSON commands (registry users, drain, gc).</summary>
    public const long NativeJson = 64 * 1024;

    /// <summary>The registry's token endpoint (a form with a user, a password and scopes).</summary>
    public const long RegistryToken = 64 * 1024;

    /// <summary>Docker API endpoints whose body is an archive, streamed: no cap.</summary>
    public static long? DockerApi(HttpRequest request)
    {
        var path = request.Path.Value ?? "";
        var streamed =
            (HttpMethods.IsPost(request.Method) && (Is(path, "/images/create") || Is(path, "/images/load") || Is(path, "/build"))) ||
            (HttpMethods.IsPut(request.Method) && path.StartsWith("/containers/", StringComparison.OrdinalIgnoreCase) &&
             path.EndsWith("/archive", StringComparison.OrdinalIgnoreCase));
        return streamed ? null : DockerJson;
    }

    public static long? NativeApi(HttpRequest request) => NativeJson;

    /// <summary>Blob uploads stream (their own rules bound them); a manifest is at most <see cref="RegistryManifest.MaxSize"/>.</summary>
    public static long? Registry(HttpRequest request)
    {
        var path = request.Path.Value ?? "";
        if (path.Contains("/blobs/uploads", StringComparison.OrdinalIgnoreCase)) return null;
        return path.StartsWith("/token", StringComparison.OrdinalIgnoreCase) ? RegistryToken : RegistryManifest.MaxSize;
    }

    /// <summary>
    /// Middleware that applies <paramref name="limitOf"/> to each request; <paramref name="refuse"/> writes the
    /// listener's error (413) for a body whose declared length is over it.
    /// </summary>
    public static Func<HttpContext, RequestDelegate, Task> Middleware(Func<HttpRequest, long?> limitOf,
        Func<HttpContext, string, Task> refuse) => async (context, next) =>
    {
        var limit = limitOf(context.Request);
        if (limit is { } max && context.Request.ContentLength > max)
        {
            context.Response.StatusCode = StatusCodes.Status413PayloadTooLarge;
            await refuse(context, $"request body is {context.Request.ContentLength} bytes; {context.Request.Method} {context.Request.Path} takes at most {max}");
            return;
        }
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } feature) feature.MaxRequestBodySize = limit;
        await next(context);
    };

    private static bool Is(string path, string expected) =>
        path.TrimEnd('/').Equals(expected, StringComparison.OrdinalIgnoreCase);
}
