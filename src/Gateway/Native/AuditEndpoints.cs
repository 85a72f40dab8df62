using System.Globalization;
using System.Text;
using System.Text.Json;
using Flotilla.Cluster;
using Flotilla.Cluster.Audit;
using Flotilla.Cluster.Containers;
using Flotilla.Contracts;
using Flotilla.Gateway.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Flotilla.Gateway.Native;

/// <summary>
/// The audit trail on the native API: <c>GET /api/audit</c> (filters, sequence cursor, JSON / NDJSON / CSV,
/// live follow), <c>GET /api/audit/export</c> (every match as NDJSON) and <c>GET /api/containers/{id}?at=</c>
/// (a container's state folded up to a moment).
/// </summary>
public static class AuditEndpoints
{
    public const string NextCursorHeader = "X-Next-Cursor";
    private static readonly string[] ObjectParameters = ["container", "image", "repository", "network", "volume", "registry-user", "object"];

    public static void MapAuditEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/audit", (HttpContext context) => Guarded(context, () => QueryAsync(context, export: false)));
        app.MapGet("/api/audit/export", (HttpContext context) => Guarded(context, () => QueryAsync(context, export: true)));
        app.MapGet("/api/containers/{id}", (HttpContext context, string id) => Guarded(context, () => ContainerAsync(context, id)));
    }

    private static async Task QueryAsync(HttpContext context, bool export)
    {
        var query = context.Request.Query;
        var audit = context.RequestServices.GetRequiredService<AuditQuery>();
        var filter = await FilterAsync(context);
        var format = export ? "ndjson" : Format(context);
        var follow = Flag(query["follow"]);
        if (follow && format == "json") format = "ndjson";
        var ct = context.RequestAborted;

        if (!export && !follow)
        {
            var page = await audit.QueryAsync(filter, ct);
            if (page.NextCursor is { } next) context.Response.Headers[NextCursorHeader] = next.ToString(CultureInfo.InvariantCulture);
            if (format == "json")
            {
                await JsonReply.WriteAsync(context, new AuditPageDto(page.Entries.Select(AuditEntryDto.From).ToList(),
                    page.NextCursor?.ToString(CultureInfo.InvariantCulture)), options: JsonReply.Native);
                return;
            }
            await StartAsync(context, format);
            await WriteAsync(context, format, page.Entries);
            return;
        }

        await StartAsync(context, format);
        if (export || !follow)
        {
            var batch = new List<AuditEntry>(256);
            await foreach (var entry in audit.ReadAllAsync(filter, ct))
            {
                batch.Add(entry);
                if (batch.Count < 256) continue;
                await WriteAsync(context, format, batch);
                batch.Clear();
            }
            await WriteAsync(context, format, batch);
            return;
        }

        // Follow: what matches so far (when a start was given), then every new match until the client leaves.
        var start = await audit.MaxSequenceAsync(ct);
        if (filter.Since is not null || filter.After > 0)
            await foreach (var entry in audit.ReadAllAsync(filter with { UpTo = start }, ct))
                await WriteAsync(context, format, [entry]);
        await context.Response.Body.FlushAsync(ct);
        if (filter.Until is { } end && end <= DateTimeOffset.UtcNow) return;
        // Until the client leaves, or until the end of the window.
        using var window = CancellationTokenSource.CreateLinkedTokenSource(ct);
        if (filter.Until is { } stop) window.CancelAfter(stop - DateTimeOffset.UtcNow);
        try
        {
            await foreach (var entry in audit.FollowAsync(filter with { Until = null }, Math.Max(start, filter.After), TimeSpan.FromMilliseconds(200), window.Token))
            {
                if (filter.Until is { } until && entry.Time > until) break;
                await WriteAsync(context, format, [entry]);
            }
        }
        catch (OperationCanceledException) when (window.IsCancellationRequested)
        {
        }
    }

    /// <summary>The query string as an audit filter; object names are resolved to their streams.</summary>
    private static async Task<AuditFilter> FilterAsync(HttpContext context)
    {
        var query = context.Request.Query;
        var subjects = context.RequestServices.GetRequiredService<AuditSubjects>();
        var now = DateTimeOffset.UtcNow;
        var streams = new List<string>();
        foreach (var parameter in ObjectParameters)
            foreach (var value in query[parameter])
                if (!string.IsNullOrEmpty(value)) streams.Add(await subjects.ResolveAsync(parameter, value, context.RequestAborted));

        var patterns = new List<string>();
        foreach (var kind in Values(query["kind"]))
            patterns.Add(AuditObject.StreamPattern(kind) ?? throw Invalid($"unknown object kind '{kind}' (known: {string.Join(", ", AuditObject.Kinds)})"));

        var limitText = query["limit"].ToString();
        var limit = 100;
        if (limitText.Length > 0 && (!int.TryParse(limitText, CultureInfo.InvariantCulture, out limit) || limit < 1 || limit > AuditQuery.MaxLimit))
            throw Invalid($"limit must be 1…{AuditQuery.MaxLimit}");
        var order = query["order"].ToString();
        if (order is not ("" or "asc" or "desc")) throw Invalid("order must be asc or desc");
        var descending = order == "desc";
        var cursorText = query["cursor"].ToString();
        long? cursor = null;
        if (cursorText.Length > 0)
            cursor = long.TryParse(cursorText, CultureInfo.InvariantCulture, out var c) && c >= 0 ? c : throw Invalid("cursor must be a sequence number");

        return new AuditFilter
        {
            Streams = streams,
            StreamPatterns = patterns,
            User = NullIfEmpty(query["user"]),
            Types = Values(query["type"]).Select(AuditQuery.TypeName).ToList(),
            Node = NullIfEmpty(query["node"]),
            CorrelationId = NullIfEmpty(query["correlation"]) ?? NullIfEmpty(query["correlationId"]),
            CausationId = NullIfEmpty(query["causation"]) ?? NullIfEmpty(query["causationId"]),
            Since = Time(query["since"], now, "since"),
            Until = Time(query["until"], now, "until"),
            After = descending ? 0 : cursor ?? 0,
            Before = descending ? cursor : null,
            Descending = descending,
            Limit = limit,
        };
    }

    private static string Format(HttpContext context)
    {
        var format = context.Request.Query["format"].ToString();
        if (format.Length == 0)
        {
            var accept = context.Request.Headers.Accept.ToString();
            format = accept.Contains("text/csv", StringComparison.OrdinalIgnoreCase) ? "csv"
                : accept.Contains("ndjson", StringComparison.OrdinalIgnoreCase) ? "ndjson" : "json";
        }
        return format is "json" or "ndjson" or "csv" ? format : throw Invalid("format must be json, ndjson or csv");
    }

    private static async Task StartAsync(HttpContext context, string format)
    {
        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = format == "csv" ? "text/csv; charset=utf-8" : "application/x-ndjson";
        if (format == "csv") await context.Response.WriteAsync(AuditCsv.Header + "\n", context.RequestAborted);
        await context.Response.Body.FlushAsync(context.RequestAborted);
    }

    private static async Task WriteAsync(HttpContext context, string format, IReadOnlyList<AuditEntry> entries)
    {
        if (entries.Count == 0) return;
        var text = new StringBuilder();
        foreach (var entry in entries)
            text.Append(format == "csv" ? AuditCsv.Row(entry) : JsonSerializer.Serialize(AuditEntryDto.From(entry), JsonReply.Native)).Append('\n');
        await context.Response.WriteAsync(text.ToString(), context.RequestAborted);
        await context.Response.Body.FlushAsync(context.RequestAborted);
    }

    // GET /api/containers/{id}?at=<time>
    private static async Task ContainerAsync(HttpContext context, string id)
    {
        var subjects = context.RequestServices.GetRequiredService<AuditSubjects>();
        var travel = context.RequestServices.GetRequiredService<TimeTravel>();
        var atText = context.Request.Query["at"].ToString();
        DateTimeOffset? at = atText.Length == 0 ? null : AuditTime.Parse(atText, DateTimeOffset.UtcNow);
        var stream = await subjects.ResolveAsync("container", id, context.RequestAborted);
        var containerId = AuditObject.FromStream(stream).Id;
        var state = await travel.ContainerAsync(containerId, at, context.RequestAborted);
        if (!state.Exists && state.Desired != DesiredState.Removed && at is not null)
            throw new OperationRejectedException(RejectionCode.NotFound, $"container {id} did not exist yet at {at:O}");
        await JsonReply.WriteAsync(context, ContainerStateDto.From(state, at), options: JsonReply.Native);
    }

    private static DateTimeOffset? Time(string? text, DateTimeOffset now, string name) =>
        string.IsNullOrEmpty(text) ? null
        : AuditTime.TryParse(text, now, out var value) ? value
        : throw Invalid($"invalid {name} '{text}': use unix seconds, RFC 3339 or a duration like 10m");

    private static IEnumerable<string> Values(Microsoft.Extensions.Primitives.StringValues values) =>
        values.SelectMany(v => (v ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

    private static string? NullIfEmpty(string? text) => string.IsNullOrEmpty(text) ? null : text;

    private static bool Flag(string? text) => text is "1" or "true" or "yes";

    private static OperationRejectedException Invalid(string message) => new(RejectionCode.InvalidArgument, message);

    private static async Task Guarded(HttpContext context, Func<Task> action)
    {
        try
        {
            await action();
        }
        catch (OperationRejectedException ex) when (!context.Response.HasStarted)
        {
            await JsonReply.ErrorAsync(context, (int)ex.Code, ex.Message);
        }
        catch (FormatException ex) when (!context.Response.HasStarted)
        {
            await JsonReply.ErrorAsync(context, StatusCodes.Status400BadRequest, ex.Message);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
        }
    }
}

public sealed record AuditPageDto(IReadOnlyList<AuditEntryDto> Entries, string? NextCursor);

public sealed record AuditEntryDto(long Sequence, DateTimeOffset Time, string Kind, string Id, string Stream, long Version, string Type,
    string? User, string? Node, string? CorrelationId, string? CausationId, JsonElement Data)
{
    public static AuditEntryDto From(AuditEntry e)
    {
        var o = e.Object;
        return new AuditEntryDto(e.Sequence, e.Time, o.Kind, o.Id, e.Stream, e.Version, e.Type, e.User, e.Node, e.CorrelationId,
            e.CausationId, e.Data);
    }
}

/// <summary>RFC 4180 CSV: a field with a comma, quote, CR or LF is quoted and its quotes doubled.</summary>
public static class AuditCsv
{
    public const string Header = "sequence,time,kind,id,version,type,user,node,correlation_id,causation_id,data";

    public static string Row(AuditEntry e)
    {
        var o = e.Object;
        return string.Join(',',
            e.Sequence.ToString(CultureInfo.InvariantCulture),
            e.Time.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.ffffffZ", CultureInfo.InvariantCulture),
            Field(o.Kind), Field(o.Id), e.Version.ToString(CultureInfo.InvariantCulture), Field(e.Type), Field(e.User), Field(e.Node),
            Field(e.CorrelationId), Field(e.CausationId), Field(e.Data.GetRawText()));
    }

    public static string Field(string? value)
    {
        if (string.IsNullOrEmpty(value)) return "";
        return value.AsSpan().IndexOfAny(",\"\r\n") < 0 ? value : "\"" + value.Replace("\"", "\"\"") + "\"";
    }
}

/// <summary>The native view of a container's folded state (camelCase; not docker inspect's shape).</summary>
public sealed record ContainerStateDto(
    string Id, string Name, bool Exists, string Status, string Desired, string Image, string ImageId, string Node, int Pid,
    int ExitCode, bool OomKilled, string Error, long Generation, int RestartCount, DateTimeOffset? CreatedAt,
    DateTimeOffset? StartedAt, DateTimeOffset? FinishedAt, IReadOnlyDictionary<string, string> Labels, DateTimeOffset? At)
{
    public static ContainerStateDto From(ContainerState s, DateTimeOffset? at) => new(
        s.ContainerId, s.Name, s.Exists, s.Desired == DesiredState.Removed ? "removed" : DockerApi.DockerWords.Of(s.Status), s.Desired.ToString().ToLowerInvariant(),
        s.Definition?.Image ?? "", s.Definition?.ImageId ?? "", s.Node, s.Pid, s.ExitCode, s.OomKilled, s.Error, s.Generation,
        s.RestartCount, s.Exists || s.Desired == DesiredState.Removed ? s.CreatedAt : null, s.StartedAt, s.FinishedAt,
        s.Definition?.Labels ?? new Dictionary<string, string>(), at);
}
