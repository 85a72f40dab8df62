using System.CommandLine;
using System.Net.Http.Json;
using Flotilla.Cli.Hosting;
using Spectre.Console;

namespace Flotilla.Cli.Commands;

/// <summary><c>flotilla registry user add|ls|passwd|rm</c>: the built-in registry's users, over the native API.</summary>
public static class RegistryUserCommand
{
    private sealed record UserRow(string Name, List<string> Rights, List<string>? Repositories, DateTimeOffset Created)
    {
        public string On => string.Join(",", Repositories ?? ["*"]);
    }

    public static Command Create()
    {
        var user = new Command("user", "Manage the registry's users (push and delete need one once any exists)");
        user.Subcommands.Add(Add());
        user.Subcommands.Add(List());
        user.Subcommands.Add(Passwd());
        user.Subcommands.Add(Remove());
        return user;
    }

    private static Command Add()
    {
        var http = Flags.Http();
        var name = new Argument<string>("NAME") { Description = "user name (lowercase letters, digits, . _ -)" };
        var rights = new Option<string>("--rights") { Description = "comma-separated: pull, push, delete", DefaultValueFactory = _ => "pull,push" };
        var repositories = new Option<string[]>("--repository")
        {
            Description = "repository pattern the rights hold on, repeatable; '*' matches any characters, '/' included "
                + "(team/* = everything under team/); default * = every repository",
        };
        var (password, passwordStdin) = PasswordOptions();
        var command = new Command("add", "Add a registry user") { http, name, rights, repositories, password, passwordStdin };
        command.SetAction(async (result, cancellationToken) =>
        {
            var secret = ReadPassword(result.GetValue(password), result.GetValue(passwordStdin));
            if (secret is null) return 1;
            using var api = new NativeApi(result.GetValue(http)!);
            var body = new
            {
                name = result.GetValue(name),
                password = secret,
                rights = result.GetValue(rights)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
                repositories = result.GetValue(repositories) is { Length: > 0 } patterns ? patterns : null,
            };
            using var response = await api.SendAsync(HttpMethod.Post, "api/registry/users", body, cancellationToken);
            if (response is null) return 1;
            var row = await response.Content.ReadFromJsonAsync<UserRow>(NativeApi.Json, cancellationToken);
            Console.WriteLine($"Added registry user {row!.Name} ({string.Join(",", row.Rights)} on {row.On})");
            return 0;
        });
        return command;
    }

    private static Command List()
    {
        var http = Flags.Http();
        var command = new Command("ls", "List registry users") { http };
        command.Aliases.Add("list");
        command.SetAction(async (result, cancellationToken) =>
        {
            using var api = new NativeApi(result.GetValue(http)!);
            using var response = await api.SendAsync(HttpMethod.Get, "api/registry/users", null, cancellationToken);
            if (response is null) return 1;
            var rows = await response.Content.ReadFromJsonAsync<List<UserRow>>(NativeApi.Json, cancellationToken) ?? [];
            var table = new Table().Border(TableBorder.Simple).AddColumns("NAME", "RIGHTS", "REPOSITORIES", "CREATED");
            foreach (var row in rows)
                table.AddRow(Markup.Escape(row.Name), Markup.Escape(string.Join(",", row.Rights)), Markup.Escape(row.On), row.Created.ToLocalTime().ToString("yyyy-MM-dd HH:mm"));
            AnsiConsole.Write(table);
            return 0;
        });
        return command;
    }

    private static Command Passwd()
    {
        var http = Flags.Http();
        var name = new Argument<string>("NAME");
        var (password, passwordStdin) = PasswordOptions();
        var command = new Command("passwd", "Change a registry user's password") { http, name, password, passwordStdin };
        command.SetAction(async (result, cancellationToken) =>
        {
            var secret = ReadPassword(result.GetValue(password), result.GetValue(passwordStdin));
            if (secret is null) return 1;
            using var api = new NativeApi(result.GetValue(http)!);
            using var response = await api.SendAsync(HttpMethod.Put, $"api/registry/users/{Uri.EscapeDataString(result.GetValue(name)!)}/password",
                new { password = secret }, cancellationToken);
            if (response is null) return 1;
            Console.WriteLine($"Password of {result.GetValue(name)} changed");
            return 0;
        });
        return command;
    }

    private static Command Remove()
    {
        var http = Flags.Http();
        var name = new Argument<string>("NAME");
        var command = new Command("rm", "Remove a registry user") { http, name };
        command.SetAction(async (result, cancellationToken) =>
        {
            using var api = new NativeApi(result.GetValue(http)!);
            using var response = await api.SendAsync(HttpMethod.Delete, $"api/registry/users/{Uri.EscapeDataString(result.GetValue(name)!)}",
                null, cancellationToken);
            if (response is null) return 1;
            Console.WriteLine($"Removed registry user {result.GetValue(name)}");
            return 0;
        });
        return command;
    }

    private static (Option<string?> Password, Option<bool> PasswordStdin) PasswordOptions() => (
        new Option<string?>("--password", "-p") { Description = "the password (visible in the process list; prefer --password-stdin)" },
        new Option<bool>("--password-stdin") { Description = "read the password from standard input" });

    /// <summary>From the flag, from stdin, or asked for on the terminal; null (after saying why) when there is none.</summary>
    private static string? ReadPassword(string? flag, bool fromStdin)
    {
        string? password = flag;
        if (fromStdin) password = Console.In.ReadToEnd().TrimEnd('\r', '\n');
        else if (password is null && !Console.IsInputRedirected)
            password = AnsiConsole.Prompt(new TextPrompt<string>("Password:").Secret());
        if (string.IsNullOrEmpty(password))
        {
            Console.Error.WriteLine("A password is required: --password-stdin, --password, or type it when asked.");
            return null;
        }
        return password;
    }
}
