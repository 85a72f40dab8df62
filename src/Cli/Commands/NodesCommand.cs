using System.CommandLine;
using System.Net.Http.Json;
using Flotilla.Cli.Hosting;
using Spectre.Console;

namespace Flotilla.Cli.Commands;

/// <summary><c>flotilla nodes</c>: the cluster's hosts, from the native API.</summary>
public static class NodesCommand
{
    public sealed record NodeRow(string Name, string Status, string Hostname, string Address, int Cpus, long MemoryBytes,
        string Kernel, string OciRuntime, Dictionary<string, string> Labels, DateTimeOffset JoinedAt, string? LeftReason,
        List<string>? Roles = null, string Availability = "active");

    /// <summary><c>akka.tcp://flotilla@10.0.0.1:4053</c> → <c>10.0.0.1:4053</c>.</summary>
    private static string ShortAddress(string address) => address[(address.IndexOf('@') + 1)..];

    public static Command Create()
    {
        var http = Flags.Http();
        var json = new Option<bool>("--json") { Description = "print JSON instead of a table" };
        var command = new Command("nodes", "List the cluster's nodes") { http, json };
        command.SetAction(async (result, cancellationToken) =>
        {
            using var api = new NativeApi(result.GetValue(http)!);
            using var response = await api.SendAsync(HttpMethod.Get, "api/nodes", null, cancellationToken);
            if (response is null) return 1;
            if (result.GetValue(json))
            {
                Console.WriteLine(await response.Content.ReadAsStringAsync(cancellationToken));
                return 0;
            }
            var nodes = await response.Content.ReadFromJsonAsync<List<NodeRow>>(NativeApi.Json, cancellationToken) ?? [];
            var table = new Table().Border(TableBorder.Simple)
                .AddColumns("NAME", "STATUS", "ADDRESS", "CPUS", "MEMORY", "RUNTIME", "LABELS", "SINCE");
            foreach (var n in nodes)
            {
                table.AddRow(Markup.Escape(n.Name),
                    (n.Status == "ready" ? "[green]ready[/]" : $"[red]{Markup.Escape(n.Status)}[/]") + (n.Availability == "active" ? "" : $" ({Markup.Escape(n.Availability)})"),
                    Markup.Escape(ShortAddress(n.Address)), n.Cpus.ToString(), $"{n.MemoryBytes / (1024.0 * 1024 * 1024):0.0} GiB",
                    // A gateway runs no containers: say so where a node names its runtime.
                    Markup.Escape(n.Roles is { } roles && !roles.Contains("node") ? "(gateway)" : n.OciRuntime),
                    Markup.Escape(string.Join(",", n.Labels.Select(l => $"{l.Key}={l.Value}"))),
                    n.JoinedAt.ToLocalTime().ToString("MM-dd HH:mm"));
            }
            AnsiConsole.Write(table);
            return 0;
        });
        return command;
    }
}
