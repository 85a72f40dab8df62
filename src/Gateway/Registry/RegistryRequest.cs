using Flotilla.Cluster.Registry;
using Flotilla.Contracts.Registry;
using Flotilla.Gateway.Registry.Auth;
using Microsoft.AspNetCore.Http;

namespace Flotilla.Gateway.Registry;

/// <summary>Every operation the registry listener serves.</summary>
public enum RegistryOperation
{
    Token, Ping, Search, Base, Catalog,
    GetBlob, DeleteBlob,
    StartUpload, UploadStatus, PatchUpload, CompleteUpload, CancelUpload,
    GetManifest, PutManifest, DeleteManifest,
    Tags, Referrers,
}

/// <summary>
/// One registry request, parsed once from the request target exactly as the client sent it. The auth middleware
/// derives the required access from it and the dispatcher serves it: both read this object (an HTTP feature), so
/// the path that is authorized is the path that is served. Canonicalisation is by refusal, not normalisation:
/// <list type="bullet">
/// <item>the path is case-sensitive (<c>/v2</c>, never <c>/V2</c>), as distribution's router;</item>
/// <item>no percent-escapes except <c>%3A</c> (a <c>:</c> some clients escape in digests);</item>
/// <item>no empty segment (<c>//</c>), no <c>.</c> or <c>..</c> segment, no trailing slash except where the
/// spec has one (<c>/v2/</c>, <c>/blobs/uploads/</c>);</item>
/// <item>only the characters of names, tags, digests and upload ids.</item>
/// </list>
/// Anything else is refused before authorization with the registry's error shape.
/// </summary>
/// <param name="Route">The repository route; null for the base, catalog, token and v1 endpoints.</param>
/// <param name="MountSource">Set by the auth middleware on a mount request whose source repository the caller may read.</param>
public sealed record RegistryRequest(RegistryOperation Operation, RegistryRoute? Route, string? MountSource = null)
{
    /// <summary>Longer paths are refused (a name is at most <see cref="RegistryNames.MaxRepositoryLength"/>).</summary>
    public const int MaxPathLength = 2048;

    /// <summary>What this request needs: nothing (token, ping), any valid token (only <c>GET/HEAD /v2/</c>), or a scope.</summary>
    public RequiredAccess Access => Operation switch
    {
        RegistryOperation.Token or RegistryOperation.Ping => RequiredAccess.None,
        RegistryOperation.Base => RequiredAccess.AnyToken,
        RegistryOperation.Catalog or RegistryOperation.Search => new RequiredAccess(RegistryScope.Catalog, false),
        _ => new RequiredAccess(new RegistryScope(RegistryScope.Repository, Route!.Name, [Action]), false),
    };

    private string Action => Operation switch
    {
        RegistryOperation.GetBlob or RegistryOperation.GetManifest or RegistryOperation.Tags or RegistryOperation.Referrers => RegistryActions.Pull,
        RegistryOperation.DeleteBlob or RegistryOperation.DeleteManifest => RegistryActions.Delete,
        _ => RegistryActions.Push,
    };

    /// <summary>The parsed request, or the refusal to answer; <paramref name="method"/> is the HTTP method.</summary>
    /// <param name="rawTarget">The request target as received (<c>IHttpRequestFeature.RawTarget</c>), query included.</param>
    public static RegistryParse Parse(string method, string rawTarget)
    {
        var query = rawTarget.IndexOf('?');
        var raw = query < 0 ? rawTarget : rawTarget[..query];
        var refusal = Canonical(raw, out var path);
        if (refusal is not null) return new RegistryParse(null, refusal);
        var read = HttpMethods.IsGet(method) || HttpMethods.IsHead(method);

        switch (path)
        {
            case "/token":
                return HttpMethods.IsGet(method) || HttpMethods.IsPost(method) ? Ok(RegistryOperation.Token) : NotAllowed(method, path);
            case "/v1/_ping":
                return read ? Ok(RegistryOperation.Ping) : NotAllowed(method, path);
            case "/v1/search":
                return HttpMethods.IsGet(method) ? Ok(RegistryOperation.Search) : NotAllowed(method, path);
            case "/v2" or "/v2/":
                return read ? Ok(RegistryOperation.Base) : NotAllowed(method, path);
            case "/v2/_catalog" or "/v2/_catalog/":
                return read ? Ok(RegistryOperation.Catalog) : NotAllowed(method, path);
        }
        if (!path.StartsWith("/v2/", StringComparison.Ordinal))
            return new RegistryParse(null, new RegistryRefusal(RegistryErrorCodes.Unsupported, "page not found", path,
                StatusCodes.Status404NotFound));

        var rest = path[4..];
        if (RegistryRoute.Parse(rest) is not { } route)
            return new RegistryParse(null, new RegistryRefusal(RegistryErrorCodes.NameUnknown, "no such route", rest, StatusCodes.Status404NotFound));
        if (!RegistryNames.IsValidRepository(route.Name))
            return new RegistryParse(null, new RegistryRefusal(RegistryErrorCodes.NameInvalid, "invalid repository name", route.Name,
                StatusCodes.Status400BadRequest));

        RegistryOperation? operation = (route.Kind, route.Argument) switch
        {
            (RegistryRouteKind.Blob, _) when read => RegistryOperation.GetBlob,
            (RegistryRouteKind.Blob, _) when HttpMethods.IsDelete(method) => RegistryOperation.DeleteBlob,
            (RegistryRouteKind.Upload, null) when HttpMethods.IsPost(method) => RegistryOperation.StartUpload,
            (RegistryRouteKind.Upload, { }) when HttpMethods.IsGet(method) => RegistryOperation.UploadStatus,
            (RegistryRouteKind.Upload, { }) when HttpMethods.IsPatch(method) => RegistryOperation.PatchUpload,
            (RegistryRouteKind.Upload, { }) when HttpMethods.IsPut(method) => RegistryOperation.CompleteUpload,
            (RegistryRouteKind.Upload, { }) when HttpMethods.IsDelete(method) => RegistryOperation.CancelUpload,
            (RegistryRouteKind.Manifest, _) when read => RegistryOperation.GetManifest,
            (RegistryRouteKind.Manifest, _) when HttpMethods.IsPut(method) => RegistryOperation.PutManifest,
            (RegistryRouteKind.Manifest, _) when HttpMethods.IsDelete(method) => RegistryOperation.DeleteManifest,
            (RegistryRouteKind.Tags, _) when read => RegistryOperation.Tags,
            (RegistryRouteKind.Referrers, _) when read => RegistryOperation.Referrers,
            _ => null,
        };
        return operation is { } op ? new RegistryParse(new RegistryRequest(op, route), null) : NotAllowed(method, path);

        RegistryParse Ok(RegistryOperation op) => new(new RegistryRequest(op, null), null);
    }

    private static RegistryParse NotAllowed(string method, string path) =>
        new(null, new RegistryRefusal(RegistryErrorCodes.Unsupported, $"{method} is not supported here", path, StatusCodes.Status405MethodNotAllowed));

    /// <summary>Checks the raw path against the rules above; on success <paramref name="path"/> is it with <c>%3A</c> decoded.</summary>
    private static RegistryRefusal? Canonical(string raw, out string path)
    {
        path = raw;
        if (raw.Length == 0 || raw[0] != '/')
            return Invalid("the request target must be a path", raw.Length > 200 ? raw[..200] : raw);
        if (raw.Length > MaxPathLength) return Invalid("the path is too long", null);
        foreach (var c in raw)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '/' or '.' or '_' or '-' or ':' or '+' or '=' or '~' or '%'))
                return Invalid("the path holds a character no name, tag or digest has", raw);
        }
        if (raw.Contains('%'))
        {
            // Only %3A: an escaped '/', '.', or letter would let the path mean one thing to a check and another to a server.
            var stripped = raw.Replace("%3A", "", StringComparison.OrdinalIgnoreCase);
            if (stripped.Contains('%')) return Invalid("percent-encoded path characters other than ':' are refused", raw);
            path = raw.Replace("%3A", ":", StringComparison.OrdinalIgnoreCase);
        }
        var segments = path.Split('/');
        // segments[0] is the empty string before the leading '/'; a trailing '/' gives one last empty segment.
        for (var i = 1; i < segments.Length; i++)
        {
            var segment = segments[i];
            if (segment is "." or "..") return Invalid("'.' and '..' path segments are refused", raw);
            if (segment.Length == 0 && i < segments.Length - 1) return Invalid("empty path segments ('//') are refused", raw);
        }
        return null;
    }

    private static RegistryRefusal Invalid(string message, string? detail) =>
        new(RegistryErrorCodes.NameInvalid, message, detail, StatusCodes.Status400BadRequest);

    /// <summary>The request parsed by the auth middleware; fails closed when it is missing.</summary>
    public static RegistryRequest Of(HttpContext context) =>
        context.Features.Get<RegistryRequest>()
        ?? throw new InvalidOperationException("registry request served without the auth middleware's parse");
}

/// <summary>A registry request refused for its path or method, with the spec's error code and distribution's status.</summary>
public sealed record RegistryRefusal(string Code, string Message, string? Detail, int Status);

/// <summary>Either a request or the refusal to answer.</summary>
public sealed record RegistryParse(RegistryRequest? Request, RegistryRefusal? Refusal);
