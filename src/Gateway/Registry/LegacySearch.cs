using System.Text.Json.Serialization;
using Flotilla.Cluster.Registry;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Flotilla.Gateway.Registry;

/// <summary>
/// The registry v1 endpoints the Docker daemon still uses for <c>docker search</c>: <c>/v1/_ping</c> and
/// <c>/v1/search?q=&amp;n=&amp;page=</c>, answered with substring matches over the catalog.
/// </summary>
public static class LegacySearch
{
    public const int DefaultPageSize = 25;
    public const int MaxPageSize = 100;

    public static Task PingAsync(HttpContext c)
    {
        c.Response.Headers["X-Docker-Registry-Standalone"] = "true";
        return RegistryApi.WriteJsonAsync(c, new { standalone = true });
    }

    public static async Task SearchAsync(HttpContext c)
    {
        var query = c.Request.Query["q"].ToString().Trim();
        var pageSize = Math.Clamp(IntOr(c.Request.Query["n"].ToString(), DefaultPageSize), 1, MaxPageSize);
        var page = Math.Max(IntOr(c.Request.Query["page"].ToString(), 1), 1);
        var names = await c.RequestServices.GetRequiredService<RegistryService>().CatalogAsync(c.RequestAborted);
        var matches = names.Where(n => n.Contains(query, StringComparison.OrdinalIgnoreCase)).ToList();
        var results = matches.Skip((page - 1) * pageSize).Take(pageSize).Select(n => new SearchResult(n, "", 0, false, false)).ToList();
        var pages = (matches.Count + pageSize - 1) / pageSize;
        await RegistryApi.WriteJsonAsync(c, new SearchResults(Math.Max(pages, 1), matches.Count, results, pageSize, query, page));
    }

    private static int IntOr(string text, int fallback) => int.TryParse(text, out var n) ? n : fallback;

    private sealed record SearchResults(
        [property: JsonPropertyName("num_pages")] int NumPages,
        [property: JsonPropertyName("num_results")] int NumResults,
        [property: JsonPropertyName("results")] IReadOnlyList<SearchResult> Results,
        [property: JsonPropertyName("page_size")] int PageSize,
        [property: JsonPropertyName("query")] string Query,
        [property: JsonPropertyName("page")] int Page);

    private sealed record SearchResult(
        [property: JsonPropertyName("name")] string Name,
        [property: JsonPropertyName("description")] string Description,
        [property: JsonPropertyName("star_count")] int StarCount,
        [property: JsonPropertyName("is_official")] bool IsOfficial,
        [property: JsonPropertyName("is_automated")] bool IsAutomated);
}
