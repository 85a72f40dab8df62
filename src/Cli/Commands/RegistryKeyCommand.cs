using System.CommandLine;
using System.Net.Http.Json;
using Flotilla.Cli.Hosting;
using Spectre.Console;

namespace Flotilla.Cli.Commands;

/// <summary><c>flotilla registry key ls|rotate|retire</c>: the registry's token signing keys, over the native API.</summary>
public static class RegistryKeyCommand
{
    private sealed record KeyRow(string Kid, DateTimeOffset Created, bool Signing);

    public static Command Create()
    {
        var key = new Command("key", "Manage the registry's token signing keys");
        key.Subcommands.Add(List());
        key.Subcommands.Add(Rotate());
        key.Subcommands.Add(Retire());
        return key;
    }

    private static Command List()
    {
        var http = Flags.Http();
        var command = new Command("ls", "List the keys in use (the signing one first)") { http };
        command.Aliases.Add("list");
        command.SetAction(async (result, cancellationToken) =>
        {
            using var api = new NativeApi(result.GetValue(http)!);
            using var response = await api.SendAsync(HttpMethod.Get, "api/registry/token-keys", null, cancellationToken);
            if (response is null) return 1;
            var rows = await response.Content.ReadFromJsonAsync<List<KeyRow>>(NativeApi.Json, cancellationToken) ?? [];
            var table = new Table().Border(TableBorder.Simple).AddColumns("KID", "CREATED", "SIGNING");
            foreach (var row in rows)
                table.AddRow(row.Kid, row.Created.ToLocalTime().ToString("yyyy-MM-dd HH:mm"), row.Signing ? "yes" : "");
            AnsiConsole.Write(table);
            return 0;
        });
        return command;
    }

    private static Command Rotate()
    {
        var http = Flags.Http();
        var command = new Command("rotate", "Sign new tokens with a new key; the old keys keep verifying until retired") { http };
        command.SetAction(async (result, cancellationToken) =>
        {
            using var api = new NativeApi(result.GetValue(http)!);
            using var response = await api.SendAsync(HttpMethod.Post, "api/registry/token-keys", new { }, cancellationToken);
            if (response is null) return 1;
            var row = await response.Content.ReadFromJsonAsync<KeyRow>(NativeApi.Json, cancellationToken);
            Console.WriteLine($"New signing key {row!.Kid}");
            return 0;
        });
        return command;
    }

    private static Command Retire()
    {
        var http = Flags.Http();
        var kid = new Argument<string>("KID");
        var command = new Command("retire", "Stop accepting tokens signed with a key (not the signing one)") { http, kid };
        command.SetAction(async (result, cancellationToken) =>
        {
            using var api = new NativeApi(result.GetValue(http)!);
            using var response = await api.SendAsync(HttpMethod.Delete, $"api/registry/token-keys/{Uri.EscapeDataString(result.GetValue(kid)!)}", null,
                cancellationToken);
            if (response is null) return 1;
            Console.WriteLine($"Retired key {result.GetValue(kid)}");
            return 0;
        });
        return command;
    }
}
