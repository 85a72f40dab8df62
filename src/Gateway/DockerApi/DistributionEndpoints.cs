using System.Text.Json;
using Flotilla.Cluster;
using Flotilla.Cluster.Images;
using Flotilla.Contracts;
using Flotilla.Contracts.Images;
using Flotilla.Gateway.Http;
using Flotilla.NodeRuntime.Distribution;
using Flotilla.NodeRuntime.Images;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Flotilla.Gateway.DockerApi;

/// <summary>
/// The engine as a registry client: pull (<c>POST /images/create?fromImage=</c>), push (<c>POST /images/{name}/push</c>),
/// login (<c>POST /auth</c>) and search (<c>GET /images/search</c>). The registry work is <see cref="ImageDistribution"/>'s;
/// this maps requests, progress and errors, and records the results on the image entities.
/// </summary>
public static class DistributionEndpoints
{
    /// <summary>Login and search wait at most this long for a registry (docker.io is not reachable everywhere).</summary>
    private static readonly TimeSpan InteractiveTimeout = TimeSpan.FromSeconds(20);

    public static void MapDistributionEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapPost("/auth", LoginAsync);
        app.MapGet("/images/search", SearchAsync);
    }

    private static ImageService Images(HttpContext c) => c.RequestServices.GetRequiredService<ImageService>();
    private static ImageDistribution Distribution(HttpContext c) => c.RequestServices.GetRequiredService<ImageDistribution>();
    private static RequestOrigin Origin(HttpContext c) => (RequestOrigin)c.Items[DockerApiMiddleware.OriginItem]!;
    private static RegistryCredentials? Credentials(HttpContext c) => RegistryAuthHeader.Decode(c.Request.Headers[RegistryAuthHeader.Name].ToString());

    // POST /images/create?fromImage=<name>&tag=<tag|digest>&platform=
    // Neither a tag nor a digest (`docker pull --all-tags` sends none) pulls every tag of the repository, as dockerd does.
    public static async Task PullAsync(HttpContext context)
    {
        ImageEndpoints.RequireImageHome(context, "docker pull");
        var query = context.Request.Query;
        var reference = ImageReference.Parse(query["fromImage"].ToString());
        var tag = query["tag"].ToString();
        if (tag.Length > 0)
        {
            if (tag.Contains(':'))
            {
                if (!ImageReference.TryParse($"{reference.Name}@{tag}", out var byDigest) || byDigest is null)
                    throw new FormatException($"invalid digest {tag}");
                reference = byDigest;
            }
            else reference = reference.WithTag(tag);
        }
        var allTags = reference.Digest is null && reference.Tag is null;
        if (reference.Digest is not null && reference.Tag is not null) reference = reference.WithoutTag();
        var platformText = query["platform"].ToString();
        var platform = platformText.Length > 0 ? PlatformSpec.Parse(platformText) : PlatformSpec.Host;
        var credentials = Credentials(context);

        var distribution = Distribution(context);
        using var lease = distribution.Store.BeginWrite();
        if (allTags)
        {
            await PullAllTagsAsync(context, distribution, reference, platform, credentials);
            return;
        }
        // Everything that can fail before a byte of content (unknown manifest, refused credentials) is a plain API error.
        var plan = await distribution.Puller.ResolveAsync(reference, credentials, platform, context.RequestAborted);
        var stream = new JsonMessageStream(context.Response);
        try
        {
            await stream.StatusAsync($"Pulling from {reference.Path}", reference.Digest ?? reference.Tag);
            var pulledNew = await FetchAndRecordAsync(context, distribution, reference, plan, stream);
            await stream.StatusAsync(pulledNew
                ? $"Status: Downloaded newer image for {reference.FamiliarString}"
                : $"Status: Image is up to date for {reference.FamiliarString}");
        }
        catch (Exception ex) when (!context.RequestAborted.IsCancellationRequested)
        {
            // Headers are out: whatever failed travels in the stream, where the CLI shows it.
            await stream.ErrorAsync(DockerErrors.StreamMessage(context, ex));
        }
    }

    /// <summary>
    /// dockerd's pull of a name without tag: the repository's tags (an unknown repository or refused login is a plain
    /// API error), then each tag as a pull of its own (<c>Pulling from</c> with the tag as id, layers, <c>Digest:</c>),
    /// then one <c>Status:</c> line for the repository.
    /// </summary>
    private static async Task PullAllTagsAsync(HttpContext context, ImageDistribution distribution, ImageReference repository,
        PlatformSpec platform, RegistryCredentials? credentials)
    {
        var tags = await distribution.Puller.ListTagsAsync(repository, credentials, context.RequestAborted);
        var stream = new JsonMessageStream(context.Response);
        try
        {
            var pulledNew = false;
            foreach (var tag in tags)
            {
                var reference = repository.WithTag(tag);
                var plan = await distribution.Puller.ResolveAsync(reference, credentials, platform, context.RequestAborted);
                await stream.StatusAsync($"Pulling from {reference.Path}", tag);
                pulledNew |= await FetchAndRecordAsync(context, distribution, reference, plan, stream);
            }
            await stream.StatusAsync(pulledNew
                ? $"Status: Downloaded newer image for {repository.FamiliarName}"
                : $"Status: Image is up to date for {repository.FamiliarName}");
        }
        catch (Exception ex) when (!context.RequestAborted.IsCancellationRequested)
        {
            await stream.ErrorAsync(DockerErrors.StreamMessage(context, ex));
        }
    }

    /// <summary>Fetches one resolved image, registers or tags it, records the pull and writes its <c>Digest:</c> line.</summary>
    /// <returns>Whether anything changed: layers fetched or the reference newly naming the image (dockerd's "newer image").</returns>
    private static async Task<bool> FetchAndRecordAsync(HttpContext context, ImageDistribution distribution, ImageReference reference,
        PullPlan plan, JsonMessageStream stream)
    {
        var imageId = plan.ImageId.ToString();
        var before = await Images(context).FindAsync(null, imageId, context.RequestAborted);
        var repoDigest = $"{reference.Name}@{plan.ManifestDigest}";
        // Up to date: the image is here and the reference already named it (dockerd's rule).
        var named = before is not null && (reference.Tag is not null ? before.RepoTags.Contains(reference.ToString()) : before.RepoDigests.Contains(repoDigest));
        var layersWereHere = plan.Config.RootFs.DiffIds.All(d => distribution.Store.Content.Exists(NodeRuntime.Storage.Digest.Parse(d)));
        var loaded = await distribution.Puller.FetchAsync(plan, new JsonMessageProgress(stream), context.RequestAborted);

        var info = context.RequestServices.GetRequiredService<GatewayInfo>();
        var references = reference.Tag is null ? (IReadOnlyList<string>)[] : [reference.ToString()];
        var existing = await Images(context).FindAsync(null, imageId, context.RequestAborted);
        if (existing is not null && existing.Nodes.Contains(info.NodeName))
        {
            foreach (var r in references.Where(r => !existing.RepoTags.Contains(r)))
                await Images(context).TagAsync(existing, r, Origin(context), context.RequestAborted);
        }
        else
        {
            var content = await distribution.Store.DescribeAsync(loaded, context.RequestAborted);
            await Images(context).RegisterAsync(new RegisterImage(imageId, ImageSource.Pulled, content, info.NodeName,
                repoDigest, references, Origin(context)), context.RequestAborted);
        }
        await Images(context).RecordDistributionAsync(new RecordImageDistribution(imageId, Pushed: false, reference.ToString(),
            plan.ManifestDigest.ToString(), reference.Domain, Origin(context)));

        await stream.StatusAsync($"Digest: {plan.ManifestDigest}");
        return !(named && layersWereHere);
    }

    // POST /images/{name}/push?tag=
    public static async Task PushAsync(HttpContext context, string name)
    {
        var named = ImageReference.Parse(name);
        var tag = context.Request.Query["tag"].ToString();
        var repository = named.WithoutTag();
        if (repository.Digest is not null) throw new FormatException("cannot push a digest reference");
        var images = Images(context);
        var targets = new List<(ImageReference Reference, ImageView Image)>();
        if (tag.Length > 0 || named.Tag is not null)
        {
            var reference = repository.WithTag(tag.Length > 0 ? tag : named.Tag!);
            var image = await images.FindAsync(reference.ToString(), reference.ToString(), context.RequestAborted)
                ?? throw DockerErrors.NotFound($"tag does not exist: {reference.FamiliarString}");
            targets.Add((reference, image));
        }
        else
        {
            // Without a tag docker pushes every tag of the repository.
            foreach (var image in await images.ListAsync(context.RequestAborted))
                foreach (var t in image.RepoTags)
                    if (ImageReference.TryParse(t, out var r) && r is not null && r.Name == repository.Name && r.Tag is not null)
                        targets.Add((r, image));
            if (targets.Count == 0) throw DockerErrors.NotFound($"An image does not exist locally with the tag: {repository.FamiliarName}");
            targets.Sort((a, b) => string.CompareOrdinal(a.Reference.Tag, b.Reference.Tag));
        }
        foreach (var (reference, image) in targets)
            if (image.ManifestDigest is null) throw new OperationRejectedException(RejectionCode.Unavailable, $"image {reference.FamiliarString} has no local manifest");

        var distribution = Distribution(context);
        using var lease = distribution.Store.BeginWrite();
        var session = await distribution.Pusher.OpenAsync(repository, Credentials(context), context.RequestAborted);
        var stream = new JsonMessageStream(context.Response);
        try
        {
            await stream.StatusAsync($"The push refers to repository [{repository.Name}]");
            foreach (var (reference, image) in targets)
            {
                var result = await distribution.Pusher.PushAsync(session, reference, NodeRuntime.Storage.Digest.Parse(image.ManifestDigest!),
                    new JsonMessageProgress(stream), context.RequestAborted);
                await images.RecordDistributionAsync(new RecordImageDistribution(image.ImageId, Pushed: true, reference.ToString(),
                    result.ManifestDigest.ToString(), reference.Domain, Origin(context)));
                await stream.StatusAsync($"{result.Tag}: digest: {result.ManifestDigest} size: {result.Size}");
                await stream.AuxAsync(new AuxPushed(result.Tag, result.ManifestDigest.ToString(), result.Size), new ProgressDetail(null, null));
            }
        }
        catch (Exception ex) when (!context.RequestAborted.IsCancellationRequested)
        {
            // Headers are out: whatever failed travels in the stream, where the CLI shows it.
            await stream.ErrorAsync(DockerErrors.StreamMessage(context, ex));
        }
    }

    private sealed record AuxPushed(string Tag, string Digest, long Size);

    // POST /auth {username, password, serveraddress}
    private static Task LoginAsync(HttpContext context) => DockerErrors.Guarded(context, async () =>
    {
        using var body = new MemoryStream();
        await context.Request.Body.CopyToAsync(body, context.RequestAborted);
        if (body.Length > 64 << 10) throw new FormatException("login request is too large");
        var credentials = RegistryAuthHeader.FromJson(body.ToArray(), "login request") ?? new RegistryCredentials(null, null);
        var domain = RegistryDomain(credentials.ServerAddress);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        timeout.CancelAfter(InteractiveTimeout);
        try
        {
            await Distribution(context).Client.LoginAsync(domain, credentials, timeout.Token);
        }
        catch (OperationCanceledException) when (!context.RequestAborted.IsCancellationRequested)
        {
            throw new RegistryException(500, $"login to {domain} timed out");
        }
        catch (RegistryException ex) when (ex.Status is 401 or 403)
        {
            await JsonReply.ErrorAsync(context, StatusCodes.Status401Unauthorized, ex.Message);
            return;
        }
        await JsonReply.WriteAsync(context, new { Status = "Login Succeeded", IdentityToken = "" });
    });

    /// <summary><c>serveraddress</c> as the CLI sends it (<c>https://index.docker.io/v1/</c>, <c>localhost:5000</c>, <c>http://h:1/</c>) → a reference domain.</summary>
    public static string RegistryDomain(string? serverAddress)
    {
        var address = (serverAddress ?? "").Trim();
        var scheme = address.IndexOf("://", StringComparison.Ordinal);
        if (scheme >= 0) address = address[(scheme + 3)..];
        var slash = address.IndexOf('/');
        if (slash >= 0) address = address[..slash];
        address = address.ToLowerInvariant();
        return address is "" or "index.docker.io" or "registry-1.docker.io" or "docker.io" or "registry.hub.docker.com"
            ? ImageReference.DefaultDomain
            : address;
    }

    // GET /images/search?term=&limit=&filters=
    private static Task SearchAsync(HttpContext context) => DockerErrors.Guarded(context, async () =>
    {
        var query = context.Request.Query;
        var term = query["term"].ToString();
        if (term.Length == 0) throw new FormatException("term is required");
        var limit = 25;
        if (query["limit"].ToString() is { Length: > 0 } limitText)
        {
            if (!int.TryParse(limitText, out limit)) throw new FormatException($"invalid limit: {limitText}");
            if (limit is < 1 or > 100) throw new FormatException($"limit {limit} is outside the range of [1, 100]");
        }
        var filters = DockerFilters.Parse(query["filters"]);
        filters.Validate("is-official", "is-automated", "stars");
        bool? official = Bool(filters.Get("is-official"), "is-official");
        bool? automated = Bool(filters.Get("is-automated"), "is-automated");
        var stars = 0;
        foreach (var s in filters.Get("stars"))
            if (!int.TryParse(s, out var n)) throw new FormatException($"invalid filter 'stars={s}'");
            else stars = Math.Max(stars, n);

        var (domain, remote) = SplitSearchTerm(term);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        timeout.CancelAfter(InteractiveTimeout);
        RegistrySearchResults results;
        try
        {
            results = await Distribution(context).Client.SearchAsync(domain, remote, limit, Credentials(context), timeout.Token);
        }
        catch (OperationCanceledException) when (!context.RequestAborted.IsCancellationRequested)
        {
            throw new RegistryException(500, $"search at {domain} timed out");
        }
        await JsonReply.WriteAsync(context, results.Results
            .Where(r => official is null || r.IsOfficial == official)
            .Where(r => automated is null || r.IsAutomated == automated)
            .Where(r => r.StarCount >= stars)
            .Take(limit)
            .Select(r => new Dictionary<string, object?>
            {
                ["name"] = r.Name,
                ["description"] = r.Description ?? "",
                ["star_count"] = r.StarCount,
                ["is_official"] = r.IsOfficial,
                ["is_automated"] = r.IsAutomated,
            }).ToList());
    });

    private static bool? Bool(IReadOnlyList<string> values, string name) => values switch
    {
        [] => null,
        [var v, ..] when bool.TryParse(v, out var b) => b,
        [var v, ..] when v is "1" or "0" => v == "1",
        [var v, ..] => throw new FormatException($"invalid filter '{name}={v}'"),
    };

    /// <summary>moby's <c>splitReposSearchTerm</c>: <c>localhost:5000/foo</c> → (<c>localhost:5000</c>, <c>foo</c>); <c>foo</c> → docker.io.</summary>
    public static (string Domain, string Remote) SplitSearchTerm(string term)
    {
        var slash = term.IndexOf('/');
        if (slash > 0)
        {
            var first = term[..slash];
            if (first.Contains('.') || first.Contains(':') || first == "localhost") return (RegistryDomain(first), term[(slash + 1)..]);
        }
        return (ImageReference.DefaultDomain, term);
    }
}
