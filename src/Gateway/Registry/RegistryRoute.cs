namespace Flotilla.Gateway.Registry;

public enum RegistryRouteKind { Blob, Upload, Manifest, Tags, Referrers }

/// <summary>
/// A <c>/v2/&lt;name&gt;/…</c> path split into its parts. Names have several segments, so the route is
/// recognised by its suffix (the last <c>/manifests/</c>, <c>/blobs/</c>… whose remainder is one segment).
/// </summary>
/// <param name="Argument">Digest, tag or upload id; null for <c>tags/list</c> and the upload start.</param>
public sealed record RegistryRoute(RegistryRouteKind Kind, string Name, string? Argument)
{
    private static readonly (string Marker, RegistryRouteKind Kind)[] OneSegment =
    [
        ("/manifests/", RegistryRouteKind.Manifest),
        ("/referrers/", RegistryRouteKind.Referrers),
        ("/blobs/", RegistryRouteKind.Blob),
    ];

    /// <param name="rest">The path after <c>/v2/</c>.</param>
    public static RegistryRoute? Parse(string rest)
    {
        if (rest.EndsWith("/tags/list", StringComparison.Ordinal))
            return new RegistryRoute(RegistryRouteKind.Tags, rest[..^"/tags/list".Length], null);

        const string uploads = "/blobs/uploads";
        var u = rest.LastIndexOf(uploads, StringComparison.Ordinal);
        if (u > 0)
        {
            var after = rest[(u + uploads.Length)..];
            if (after is "" or "/") return new RegistryRoute(RegistryRouteKind.Upload, rest[..u], null);
            if (after[0] == '/' && after.IndexOf('/', 1) < 0) return new RegistryRoute(RegistryRouteKind.Upload, rest[..u], after[1..]);
        }
        foreach (var (marker, kind) in OneSegment)
        {
            var i = rest.LastIndexOf(marker, StringComparison.Ordinal);
            if (i <= 0) continue;
            var argument = rest[(i + marker.Length)..];
            if (argument.Length > 0 && !argument.Contains('/')) return new RegistryRoute(kind, rest[..i], argument);
        }
        return null;
    }
}
