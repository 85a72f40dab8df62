using System.CommandLine;
using System.Globalization;
using Flotilla.Cli.Hosting;

namespace Flotilla.Cli.Commands;

/// <summary><c>flotilla history &lt;container|image&gt;</c>: one object's events, oldest first (removed objects too).</summary>
public static class HistoryCommand
{
    public static Command Create()
    {
        var http = Flags.Http();
        var target = new Argument<string>("OBJECT") { Description = "container (name or id) or image (reference or id)" };
        var output = new Option<string>("--output", "-o") { Description = "table, json, ndjson or csv", DefaultValueFactory = _ => "table" };
        var command = new Command("history", "List the events of a container or an image") { http, target, output };
        command.SetAction(async (result, cancellationToken) =>
        {
            var format = result.GetValue(output)!;
            var query = new List<KeyValuePair<string, string>>
            {
                new("object", result.GetValue(target)!),
                new("limit", AuditLimit.ToString(CultureInfo.InvariantCulture)),
                new("format", format == "table" ? "ndjson" : format),
            };
            return await AuditCommand.PrintAsync(result.GetValue(http)!, "api/audit", query, format, false, cancellationToken);
        });
        return command;
    }

    private const int AuditLimit = 1000;
}
