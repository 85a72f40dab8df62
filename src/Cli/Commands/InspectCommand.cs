using System.CommandLine;
using Flotilla.Cli.Hosting;

namespace Flotilla.Cli.Commands;

/// <summary><c>flotilla inspect [--at TIME] &lt;container&gt;</c>: a container's state now, or as it was at a moment (folded from its events).</summary>
public static class InspectCommand
{
    public static Command Create()
    {
        var http = Flags.Http();
        var target = new Argument<string>("CONTAINER") { Description = "name, id or id prefix (removed containers too)" };
        var at = new Option<string?>("--at") { Description = "the moment: RFC 3339, unix seconds, or a duration ago (10m)" };
        var command = new Command("inspect", "Show a container's state, now or at a past moment") { http, target, at };
        command.SetAction(async (result, cancellationToken) =>
        {
            var query = result.GetValue(at) is { Length: > 0 } moment ? AuditCommand.QueryString([new("at", moment)]) : "";
            using var api = new NativeApi(result.GetValue(http)!);
            using var response = await api.SendAsync(HttpMethod.Get,
                $"api/containers/{Uri.EscapeDataString(result.GetValue(target)!)}{query}", null, cancellationToken);
            if (response is null) return 1;
            Console.WriteLine(await response.Content.ReadAsStringAsync(cancellationToken));
            return 0;
        });
        return command;
    }
}
