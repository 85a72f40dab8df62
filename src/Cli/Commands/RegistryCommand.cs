using System.CommandLine;
using System.Globalization;
using System.Net.Http.Json;
using Flotilla.Cli.Hosting;
using Spectre.Console;

namespace Flotilla.Cli.Commands;

/// <summary><c>flotilla registry …</c>: the built-in registry's maintenance verbs.</summary>
public static class RegistryCommand
{
    public sealed record RemovedBlobRow(string Digest, long Size);

    public sealed record GcReportRow(List<RemovedBlobRow> Removed, long FreedBytes, int Kept, int Marked, List<string> AbandonedUploads);

    public static Command Create() => new("registry", "Manage the built-in registry") { Gc(), RegistryUserCommand.Create(), RegistryKeyCommand.Create() };

    private static Command Gc()
    {
        var http = Flags.Http();
        var minAge = new Option<string>("--min-age")
        {
            Description = "only remove blobs written longer ago than this (e.g. 1h, 30m, 90s, 0)",
            DefaultValueFactory = _ => "1h",
        };
        var json = new Option<bool>("--json") { Description = "print JSON instead of text" };
        var command = new Command("gc", "Remove registry blobs that no manifest references (mark and sweep)") { http, minAge, json };
        command.SetAction(async (result, cancellationToken) =>
        {
            if (!TryParseDuration(result.GetValue(minAge)!, out var age))
            {
                Console.Error.WriteLine($"--min-age: '{result.GetValue(minAge)}' is not a duration (e.g. 1h, 30m, 90s, 0)");
                return 2;
            }
            using var api = new NativeApi(result.GetValue(http)!, TimeSpan.FromMinutes(10));
            using var response = await api.SendAsync(HttpMethod.Post, $"api/registry/gc?minAgeSeconds={(long)age.TotalSeconds}", null, cancellationToken);
            if (response is null) return 1;
            if (result.GetValue(json))
            {
                Console.WriteLine(await response.Content.ReadAsStringAsync(cancellationToken));
                return 0;
            }
            var report = await response.Content.ReadFromJsonAsync<GcReportRow>(NativeApi.Json, cancellationToken)
                ?? throw new InvalidDataException("empty answer");
            foreach (var blob in report.Removed) Console.WriteLine($"deleted {blob.Digest} ({blob.Size} bytes)");
            foreach (var upload in report.AbandonedUploads) Console.WriteLine($"deleted abandoned upload {upload}");
            AnsiConsole.MarkupLine($"{report.Removed.Count} blob(s) removed, {report.FreedBytes} bytes freed, {report.Kept} kept");
            return 0;
        });
        return command;
    }

    /// <summary>Go-style durations: <c>1h30m</c>, <c>90s</c>, <c>2d</c>; a bare number is seconds.</summary>
    public static bool TryParseDuration(string text, out TimeSpan duration)
    {
        duration = TimeSpan.Zero;
        var s = text.Trim().ToLowerInvariant();
        if (s.Length == 0) return false;
        if (long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var bare))
        {
            duration = TimeSpan.FromSeconds(bare);
            return true;
        }
        var i = 0;
        while (i < s.Length)
        {
            var start = i;
            while (i < s.Length && (char.IsAsciiDigit(s[i]) || s[i] == '.')) i++;
            if (i == start || !double.TryParse(s[start..i], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value)) return false;
            var unitStart = i;
            while (i < s.Length && char.IsAsciiLetter(s[i])) i++;
            TimeSpan unit;
            switch (s[unitStart..i])
            {
                case "ms": unit = TimeSpan.FromMilliseconds(1); break;
                case "s": unit = TimeSpan.FromSeconds(1); break;
                case "m": unit = TimeSpan.FromMinutes(1); break;
                case "h": unit = TimeSpan.FromHours(1); break;
                case "d": unit = TimeSpan.FromDays(1); break;
                default: return false;
            }
            duration += unit * value;
        }
        return true;
    }
}
