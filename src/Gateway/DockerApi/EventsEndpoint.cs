using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Flotilla.Cluster.Audit;
using Flotilla.Gateway.Http;
using Flotilla.NodeRuntime.Images;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Flotilla.Gateway.DockerApi;

/// <summary>
/// <c>GET /events</c> served from the event store: the stored events between <c>since</c> and <c>until</c>
/// in Docker's shape, then (without a past <c>until</c>) new ones as they are stored.
/// </summary>
public static class EventsEndpoint
{
    private static readonly string[] FilterKeys =
        ["config", "container", "daemon", "event", "image", "label", "network", "node", "plugin", "scope", "secret", "service", "type", "volume"];

    private static readonly string[] StreamPatterns = ["container-%", "image-%", "node-%"];

    public static void MapEventsEndpoint(this IEndpointRouteBuilder app) =>
        app.MapGet("/events", context => DockerErrors.Guarded(context, () => EventsAsync(context)));

    private static async Task EventsAsync(HttpContext context)
    {
        var query = context.Request.Query;
        var filters = DockerFilters.Parse(query["filters"]);
        filters.Validate(FilterKeys);
        var now = DateTimeOffset.UtcNow;
        DateTimeOffset? since = query["since"].ToString() is { Length: > 0 } s ? AuditTime.Parse(s, now) : null;
        DateTimeOffset? until = query["until"].ToString() is { Length: > 0 } u ? AuditTime.Parse(u, now) : null;
        if (since is { } a && until is { } b && b < a) throw new FormatException("`since` time must be before `until` time");

        var audit = context.RequestServices.GetRequiredService<AuditQuery>();
        var ct = context.RequestAborted;
        var actors = new DockerActors(audit);
        var filter = new AuditFilter { StreamPatterns = StreamPatterns, Since = since, Until = until };
        var start = await audit.MaxSequenceAsync(ct);

        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = JsonReply.ContentType;
        await context.Response.StartAsync(ct);
        await context.Response.Body.FlushAsync(ct);

        async Task SendAsync(AuditEntry entry)
        {
            foreach (var e in await actors.MapAsync(entry, ct))
            {
                if (!Matches(filters, e, entry.Node)) continue;
                // One write, so one HTTP chunk per event and its newline, as dockerd sends them: docker-py parses each
                // chunk as a JSON document (events(until=...) failed on a chunk that held only the newline).
                var line = JsonSerializer.SerializeToUtf8Bytes(e, JsonReply.Docker);
                Array.Resize(ref line, line.Length + 1);
                line[^1] = (byte)'\n';
                await context.Response.Body.WriteAsync(line, ct);
                await context.Response.Body.FlushAsync(ct);
            }
        }

        try
        {
            if (since is not null)
                await foreach (var entry in audit.ReadAllAsync(filter with { UpTo = start }, ct))
                    await SendAsync(entry);
            if (until is { } end && end <= DateTimeOffset.UtcNow) return;

            // Live: until the client leaves, or until the end of the window.
            using var window = CancellationTokenSource.CreateLinkedTokenSource(ct);
            if (until is { } stop) window.CancelAfter(stop - DateTimeOffset.UtcNow);
            await foreach (var entry in audit.FollowAsync(filter with { Since = null, Until = null }, start, TimeSpan.FromMilliseconds(200), window.Token))
            {
                if (until is { } last && entry.Time > last) break;
                // A since in the future waits for its moment, as docker does.
                if (since is { } first && entry.Time < first) continue;
                await SendAsync(entry);
            }
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            // The window closed.
        }
        catch (OperationCanceledException)
        {
            // The client left.
        }
    }

    /// <summary>Docker's event filters (moby's daemon/events/filter.go), plus <c>node</c>: where it happened.</summary>
    public static bool Matches(DockerFilters filters, DockerEvent e, string? node)
    {
        if (filters.Get("type") is { Count: > 0 } types && !types.Contains(e.Type)) return false;
        if (filters.Get("event") is { Count: > 0 } actions && !actions.Any(a => a == e.Action || e.Action.StartsWith(a + ":", StringComparison.Ordinal)))
            return false;
        if (filters.Get("scope") is { Count: > 0 } scopes && !scopes.Contains(e.Scope)) return false;
        if (filters.Get("node") is { Count: > 0 } nodes && (node is null || !nodes.Contains(node))) return false;
        foreach (var (key, type) in new[] { ("daemon", "daemon"), ("network", "network"), ("volume", "volume"), ("plugin", "plugin"),
                     ("config", "config"), ("secret", "secret"), ("service", "service") })
            if (filters.Get(key) is { Count: > 0 } names && (e.Type != type || !names.Any(n => Fuzzy(n, e.Actor.ID) || Fuzzy(n, Attribute(e, "name")))))
                return false;
        if (filters.Get("container") is { Count: > 0 } containers &&
            (e.Type != "container" || !containers.Any(c => Fuzzy(c, e.Actor.ID) || Fuzzy(c, Attribute(e, "name")))))
            return false;
        if (filters.Get("image") is { Count: > 0 } images)
        {
            var candidates = e.Type switch
            {
                "container" => new[] { Attribute(e, "image") },
                "image" => [e.Actor.ID, Attribute(e, "name")],
                _ => [],
            };
            if (!images.Any(i => candidates.Any(c => SameImage(i, c)))) return false;
        }
        foreach (var label in filters.Get("label"))
        {
            var eq = label.IndexOf('=');
            var key = eq < 0 ? label : label[..eq];
            if (!e.Actor.Attributes.TryGetValue(key, out var value)) return false;
            if (eq >= 0 && value != label[(eq + 1)..]) return false;
        }
        return true;
    }

    private static string? Attribute(DockerEvent e, string key) => e.Actor.Attributes.GetValueOrDefault(key);

    private static bool Fuzzy(string filter, string? value) =>
        value is not null && (value == filter || value.StartsWith(filter, StringComparison.Ordinal));

    private static bool SameImage(string filter, string? value)
    {
        if (string.IsNullOrEmpty(value)) return false;
        if (value == filter) return true;
        if (value.StartsWith("sha256:", StringComparison.Ordinal))
            return value.StartsWith(filter.StartsWith("sha256:", StringComparison.Ordinal) ? filter : "sha256:" + filter, StringComparison.Ordinal);
        return Familiar(value) is { } v && Familiar(filter) is { } f && v == f;
    }

    private static string? Familiar(string reference) =>
        ImageReference.TryParse(reference, out var r) && r is not null ? (r.Tag is null && r.Digest is null ? r.WithTag(ImageReference.DefaultTag) : r).FamiliarString : null;
}

/// <summary>Docker's event message (API 1.51: <c>status</c>/<c>id</c>/<c>from</c> are still sent for containers and images).</summary>
public sealed record DockerEvent(
    [property: JsonPropertyName("status"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Status,
    [property: JsonPropertyName("id"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Id,
    [property: JsonPropertyName("from"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? From,
    string Type,
    string Action,
    DockerActor Actor,
    [property: JsonPropertyName("scope")] string Scope,
    [property: JsonPropertyName("time")] long Time,
    [property: JsonPropertyName("timeNano")] long TimeNano);

public sealed record DockerActor(string ID, Dictionary<string, string> Attributes);

/// <summary>
/// Our events as Docker's: a container's events carry its image, name and labels (taken from its
/// <c>container_created</c> event, looked up once per container), an image's carry its name.
/// </summary>
public sealed class DockerActors(AuditQuery audit)
{
    private sealed record ContainerFacts(string Image, string Name, Dictionary<string, string> Labels);

    private readonly Dictionary<string, ContainerFacts> _containers = new(StringComparer.Ordinal);

    public async Task<IReadOnlyList<DockerEvent>> MapAsync(AuditEntry entry, CancellationToken cancellationToken)
    {
        var o = entry.Object;
        var d = entry.Data;
        return o.Kind switch
        {
            "container" => await ContainerAsync(entry, o.Id, d, cancellationToken),
            "image" => Image(entry, o.Id, d),
            "node" => entry.Type switch
            {
                "node_joined" => [Event(entry, "node", "create", o.Id, new() { ["name"] = o.Id })],
                "node_left" => [Event(entry, "node", "remove", o.Id, new() { ["name"] = o.Id, ["reason"] = Text(d, "Reason") ?? "" })],
                _ => [],
            },
            _ => [],
        };
    }

    private async Task<IReadOnlyList<DockerEvent>> ContainerAsync(AuditEntry entry, string id, JsonElement d, CancellationToken cancellationToken)
    {
        if (entry.Type == "container_created") _containers[id] = Facts(d);
        if (!_containers.TryGetValue(id, out var facts))
        {
            var created = await audit.QueryAsync(new AuditFilter { Streams = [entry.Stream], Types = ["container_created"], Limit = 1 }, cancellationToken);
            facts = created.Entries.Count > 0 ? Facts(created.Entries[0].Data) : new ContainerFacts("", "", []);
            _containers[id] = facts;
        }
        if (entry.Type == "container_renamed" && Text(d, "NewName") is { } renamed) _containers[id] = facts = facts with { Name = renamed };

        DockerEvent Make(string action, Dictionary<string, string>? extra = null)
        {
            var attributes = new Dictionary<string, string>(facts.Labels) { ["image"] = facts.Image, ["name"] = facts.Name };
            foreach (var (k, v) in extra ?? []) attributes[k] = v;
            return Event(entry, "container", action, id, attributes, facts.Image);
        }

        var command = d.TryGetProperty("Command", out var cmd) && cmd.ValueKind == JsonValueKind.Array
            ? string.Join(' ', cmd.EnumerateArray().Select(c => c.GetString())) : "";
        return entry.Type switch
        {
            "container_created" => [Make("create")],
            "container_renamed" => [Make("rename", new() { ["oldName"] = "/" + (Text(d, "OldName") ?? "") })],
            "container_started" => [Make("start")],
            "container_start_failed" => [Make("die", new() { ["exitCode"] = Number(d, "ExitCode"), ["error"] = Text(d, "Error") ?? "" })],
            "container_exited" => d.TryGetProperty("OomKilled", out var oom) && oom.ValueKind == JsonValueKind.True
                ? [Make("oom"), Make("die", new() { ["exitCode"] = Number(d, "ExitCode") })]
                : [Make("die", new() { ["exitCode"] = Number(d, "ExitCode") })],
            "container_stopped" => [Make("stop")],
            "container_killed" => [Make("kill", new() { ["signal"] = Signal(Text(d, "Signal")) })],
            "container_restarted" => [Make("restart")],
            "container_paused" => [Make("pause")],
            "container_unpaused" => [Make("unpause")],
            "container_exec_started" =>
            [
                Make("exec_create: " + command, new() { ["execID"] = Text(d, "ExecId") ?? "" }),
                Make("exec_start: " + command, new() { ["execID"] = Text(d, "ExecId") ?? "" }),
            ],
            "container_committed" => [Make("commit", new() { ["imageID"] = Text(d, "ImageId") ?? "" })],
            "container_exported" => [Make("export")],
            "container_removed" => [Make("destroy")],
            // Docker's action names the new status: "health_status: healthy" (only changes are events, as in dockerd).
            "container_health_changed" => [Make("health_status: " + (Text(d, "Status") ?? "").ToLowerInvariant())],
            _ => [],
        };
    }

    private static IReadOnlyList<DockerEvent> Image(AuditEntry entry, string imageId, JsonElement d)
    {
        var reference = Text(d, "Reference");
        var name = reference is null ? imageId : Familiar(reference);
        switch (entry.Type)
        {
            case "image_registered":
                // A pull is reported by its own image_pulled event (every pull, also of an image already here).
                var action = Text(d, "Source") switch
                {
                    "Imported" => "import",
                    "Loaded" => "load",
                    "Built" => "build",
                    _ => null,
                };
                return action is null ? [] : [Event(entry, "image", action, imageId, new() { ["name"] = imageId })];
            case "image_pulled" or "image_pushed" when reference is not null:
                // Docker names pulls and pushes by the reference, not the image id.
                return [Event(entry, "image", entry.Type == "image_pulled" ? "pull" : "push", name, new() { ["name"] = name })];
            case "image_tagged":
                return [Event(entry, "image", "tag", imageId, new() { ["name"] = name })];
            case "image_untagged":
                return [Event(entry, "image", "untag", imageId, new() { ["name"] = imageId })];
            case "image_removed":
                return [Event(entry, "image", "delete", imageId, new() { ["name"] = imageId })];
            default:
                return [];
        }
    }

    private static DockerEvent Event(AuditEntry entry, string type, string action, string id, Dictionary<string, string> attributes,
        string? from = null)
    {
        var nanos = (entry.Time - DateTimeOffset.UnixEpoch).Ticks * 100;
        var legacy = type is "container" or "image";
        return new DockerEvent(legacy ? action : null, legacy ? id : null, type == "container" ? from ?? "" : null, type, action,
            new DockerActor(id, attributes), "local", nanos / 1_000_000_000, nanos);
    }

    private static ContainerFacts Facts(JsonElement created)
    {
        var definition = created.TryGetProperty("Definition", out var def) ? def : default;
        var labels = new Dictionary<string, string>();
        if (definition.ValueKind == JsonValueKind.Object && definition.TryGetProperty("Labels", out var l) && l.ValueKind == JsonValueKind.Object)
            foreach (var p in l.EnumerateObject()) labels[p.Name] = p.Value.GetString() ?? "";
        return new ContainerFacts(definition.ValueKind == JsonValueKind.Object ? Text(definition, "Image") ?? "" : "", Text(created, "Name") ?? "", labels);
    }

    private static string? Text(JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static string Number(JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetRawText() : "0";

    /// <summary>Docker reports the signal number (<c>"9"</c>); a kill without a signal is SIGTERM's.</summary>
    private static string Signal(string? signal) =>
        string.IsNullOrEmpty(signal) ? "15"
        : Contracts.Containers.Signal.TryParse(signal, out var parsed) ? parsed.Number.ToString(CultureInfo.InvariantCulture)
        : signal;

    private static string Familiar(string reference) =>
        ImageReference.TryParse(reference, out var r) && r is not null ? r.FamiliarString : reference;
}
