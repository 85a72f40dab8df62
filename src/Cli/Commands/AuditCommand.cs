using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Flotilla.Cli.Hosting;

namespace Flotilla.Cli.Commands;

/// <summary>
/// <c>flotilla audit</c>: who changed what, when, from the event store (native API <c>/api/audit</c>);
/// <c>flotilla audit export</c>: every matching event as NDJSON, for archiving.
/// </summary>
public static class AuditCommand
{
    /// <summary>The filter flags shared by <c>audit</c> and <c>audit export</c>, as query parameters.</summary>
    private sealed class FilterOptions
    {
        public readonly Option<string?> Since = new("--since") { Description = "from this time: 1h, 30m, RFC 3339 or unix seconds" };
        public readonly Option<string?> Until = new("--until") { Description = "up to this time (same forms as --since)" };
        public readonly Option<string?> User = new("--user", "-u") { Description = "only changes by this user (e.g. uid:0(root), anonymous@127.0.0.1, token:admin, system)" };
        public readonly Option<string[]> Type = new("--type", "-t") { Description = "event type, e.g. container_started or ContainerStarted (repeatable)" };
        public readonly Option<string?> Container = new("--container") { Description = "one container (name, id or id prefix; removed ones too)" };
        public readonly Option<string?> Image = new("--image") { Description = "one image (reference or id)" };
        public readonly Option<string?> Object = new("--object") { Description = "one object kind:name, e.g. repository:library/busybox, node:n1" };
        public readonly Option<string[]> Kind = new("--kind") { Description = "only objects of this kind: container, image, node, repository, registry-user, … (repeatable)" };
        public readonly Option<string?> Node = new("--node") { Description = "only changes made on this node" };
        public readonly Option<string?> Correlation = new("--correlation") { Description = "one request's story (its correlation id)" };
        public readonly Option<string?> Causation = new("--causation") { Description = "what a request caused (its causation id: a client's own X-Request-Id)" };

        public void AddTo(Command command)
        {
            foreach (var option in new Option[] { Since, Until, User, Type, Container, Image, Object, Kind, Node, Correlation, Causation })
                command.Options.Add(option);
        }

        public List<KeyValuePair<string, string>> Query(ParseResult result)
        {
            var query = new List<KeyValuePair<string, string>>();
            void Add(string key, string? value)
            {
                if (!string.IsNullOrEmpty(value)) query.Add(new(key, value));
            }
            Add("since", result.GetValue(Since));
            Add("until", result.GetValue(Until));
            Add("user", result.GetValue(User));
            foreach (var t in result.GetValue(Type) ?? []) Add("type", t);
            Add("container", result.GetValue(Container));
            Add("image", result.GetValue(Image));
            if (result.GetValue(Object) is { } o)
            {
                var colon = o.IndexOf(':');
                if (colon <= 0) Add("object", o);
                else Add(o[..colon], o[(colon + 1)..]);
            }
            foreach (var k in result.GetValue(Kind) ?? []) Add("kind", k);
            Add("node", result.GetValue(Node));
            Add("correlation", result.GetValue(Correlation));
            Add("causation", result.GetValue(Causation));
            return query;
        }
    }

    public static Command Create()
    {
        var http = Flags.Http();
        var filters = new FilterOptions();
        var follow = new Option<bool>("--follow", "-f") { Description = "keep printing new events as they happen" };
        var output = new Option<string>("--output", "-o") { Description = "table, json, ndjson or csv", DefaultValueFactory = _ => "table" };
        var limit = new Option<int>("--limit", "-n") { Description = "at most this many events (1…1000)", DefaultValueFactory = _ => 100 };
        var cursor = new Option<string?>("--cursor") { Description = "continue after this sequence number (the previous page's next cursor)" };
        var command = new Command("audit", "Show the audit trail: every change, who made it, from which request") { http, follow, output, limit, cursor };
        filters.AddTo(command);
        command.SetAction(async (result, cancellationToken) =>
        {
            var format = result.GetValue(output)!;
            if (format is not ("table" or "json" or "ndjson" or "csv"))
            {
                Console.Error.WriteLine("--output must be table, json, ndjson or csv");
                return 2;
            }
            var query = filters.Query(result);
            query.Add(new("limit", result.GetValue(limit).ToString(CultureInfo.InvariantCulture)));
            if (result.GetValue(cursor) is { Length: > 0 } c) query.Add(new("cursor", c));
            var isFollow = result.GetValue(follow);
            if (isFollow) query.Add(new("follow", "true"));
            query.Add(new("format", format == "table" || isFollow && format == "json" ? "ndjson" : format));
            return await PrintAsync(result.GetValue(http)!, "api/audit", query, format, isFollow, cancellationToken);
        });
        command.Subcommands.Add(Export(filters));
        command.Subcommands.Add(LedgerCommands.Verify());
        return command;
    }

    private static Command Export(FilterOptions filters)
    {
        var http = Flags.Http();
        var command = new Command("export", "Write every matching event as NDJSON to stdout (flotilla audit export --since 24h > audit.ndjson)") { http };
        filters.AddTo(command);
        command.SetAction(async (result, cancellationToken) =>
        {
            using var api = new NativeApi(result.GetValue(http)!);
            using var response = await api.SendAsync(HttpMethod.Get, "api/audit/export" + QueryString(filters.Query(result)), null, cancellationToken, streamed: true);
            if (response is null) return 1;
            await using var body = await response.Content.ReadAsStreamAsync(cancellationToken);
            await using var stdout = Console.OpenStandardOutput();
            await body.CopyToAsync(stdout, cancellationToken);
            return 0;
        });
        return command;
    }

    /// <summary>Fetches <paramref name="path"/> and prints it as a table (from NDJSON) or passes the body through.</summary>
    public static async Task<int> PrintAsync(string address, string path, List<KeyValuePair<string, string>> query, string format, bool follow,
        CancellationToken cancellationToken)
    {
        using var api = new NativeApi(address);
        using var response = await api.SendAsync(HttpMethod.Get, path + QueryString(query), null, cancellationToken, streamed: true);
        if (response is null) return 1;
        await using var body = await response.Content.ReadAsStreamAsync(cancellationToken);
        if (format != "table")
        {
            await using var stdout = Console.OpenStandardOutput();
            try
            {
                await body.CopyToAsync(stdout, cancellationToken);
            }
            catch (OperationCanceledException)
            {
            }
            return 0;
        }
        Console.WriteLine(Row("TIME", "OBJECT", "TYPE", "USER", "NODE", "CORRELATION"));
        using var reader = new StreamReader(body, Encoding.UTF8);
        try
        {
            while (await reader.ReadLineAsync(cancellationToken) is { } line)
            {
                if (line.Length == 0) continue;
                using var entry = JsonDocument.Parse(line);
                var e = entry.RootElement;
                var id = e.GetProperty("id").GetString() ?? "";
                if (id.StartsWith("sha256:", StringComparison.Ordinal)) id = id[7..];
                Console.WriteLine(Row(
                    e.GetProperty("time").GetDateTimeOffset().ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss.fff", CultureInfo.InvariantCulture),
                    $"{e.GetProperty("kind").GetString()} {(id.Length > 12 && id.All(char.IsAsciiHexDigitLower) ? id[..12] : id)}",
                    e.GetProperty("type").GetString() ?? "",
                    e.GetProperty("user").GetString() ?? "",
                    e.GetProperty("node").GetString() ?? "",
                    e.GetProperty("correlationId").GetString() ?? ""));
            }
        }
        catch (OperationCanceledException)
        {
        }
        if (!follow && response.Headers.TryGetValues("X-Next-Cursor", out var next))
            Console.WriteLine($"(more: --cursor {next.First()})");
        return 0;
    }

    private static string Row(string time, string obj, string type, string user, string node, string correlation) =>
        $"{time,-23}  {obj,-24}  {type,-24}  {user,-24}  {node,-12}  {correlation}";

    public static string QueryString(IEnumerable<KeyValuePair<string, string>> query)
    {
        var text = string.Join('&', query.Select(p => $"{Uri.EscapeDataString(p.Key)}={Uri.EscapeDataString(p.Value)}"));
        return text.Length == 0 ? "" : "?" + text;
    }
}
