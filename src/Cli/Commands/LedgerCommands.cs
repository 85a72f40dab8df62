using System.CommandLine;
using System.Net.Http.Json;
using Flotilla.Cli.Hosting;

namespace Flotilla.Cli.Commands;

/// <summary><c>flotilla audit verify</c> and <c>flotilla replay</c>, over the native API.</summary>
public static class LedgerCommands
{
    private sealed record Problem(string Kind, string Stream, long? Version, long? Sequence, string Detail);
    private sealed record Verification(long Events, int Streams, int Checkpoints, long UnchainedEvents, List<Problem> Problems, long Format1Events,
        bool SignaturesChecked, int UnsignedCheckpoints);
    private sealed record Rebuilt(string Projection, double Seconds);

    public static Command Verify()
    {
        var http = Flags.Http();
        var command = new Command("verify", "Check every event's hash chain and the checkpoints; exit 1 when something was tampered with") { http };
        command.SetAction(async (result, cancellationToken) =>
        {
            using var api = new NativeApi(result.GetValue(http)!, TimeSpan.FromMinutes(30));
            using var response = await api.SendAsync(HttpMethod.Get, "api/audit/verify", null, cancellationToken);
            if (response is null) return 2;
            var report = (await response.Content.ReadFromJsonAsync<Verification>(NativeApi.Json, cancellationToken))!;
            foreach (var p in report.Problems)
            {
                var where = p.Stream.Length > 0 ? $"{p.Stream}{(p.Version is { } v ? $" v{v}" : "")}" : "global sequence";
                Console.WriteLine($"TAMPERED {p.Kind,-10} {where}{(p.Sequence is { } s ? $" (seq {s})" : "")}: {p.Detail}");
            }
            Console.WriteLine($"{(report.Problems.Count == 0 ? "OK" : "FAILED")}: {report.Events} events in {report.Streams} streams, " +
                $"{report.Checkpoints} checkpoints, {report.Problems.Count} problem(s)" +
                (report.UnchainedEvents > 0 ? $"; {report.UnchainedEvents} event(s) predate hash chaining" : "") +
                (report.Format1Events > 0 ? $"; {report.Format1Events} event(s) carry format-1 hashes (fields added to their bodies and their timestamps are not covered)" : "") +
                (!report.SignaturesChecked ? "; checkpoint signatures not checked (this gateway holds no checkpoint key)"
                    : report.UnsignedCheckpoints > 0 ? $"; {report.UnsignedCheckpoints} checkpoint(s) predate signing" : ""));
            return report.Problems.Count == 0 ? 0 : 1;
        });
        return command;
    }

    public static Command Replay()
    {
        var http = Flags.Http();
        var command = new Command("replay", "Rebuild every read model (containers, images, nodes, …) from the events") { http };
        command.SetAction(async (result, cancellationToken) =>
        {
            using var api = new NativeApi(result.GetValue(http)!, TimeSpan.FromMinutes(30));
            using var response = await api.SendAsync(HttpMethod.Post, "api/replay", null, cancellationToken);
            if (response is null) return 1;
            foreach (var r in (await response.Content.ReadFromJsonAsync<List<Rebuilt>>(NativeApi.Json, cancellationToken))!)
                Console.WriteLine($"rebuilt {r.Projection} in {r.Seconds:F2} s");
            return 0;
        });
        return command;
    }
}
