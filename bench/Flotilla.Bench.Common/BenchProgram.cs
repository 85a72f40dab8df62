using System.Globalization;

namespace Flotilla.Bench.Common;

/// <summary>The options the peer benchmarks share: <c>--iterations N</c>, <c>--quick</c>, <c>--size-mb MB</c>, <c>--keep</c>, plus their own valued ones.</summary>
public sealed record BenchArgs(int Iterations, int SizeMb, bool Keep, IReadOnlyDictionary<string, string> Values);

/// <summary>A benchmark's Main: parse, filter Akka's INFO lines, a short temp root, Ctrl-C, cleanup.</summary>
public static class BenchProgram
{
    /// <param name="extra">Valued options of this benchmark (e.g. <c>--debs</c>), found in <see cref="BenchArgs.Values"/>.</param>
    public static BenchArgs? Parse(string[] args, string usage, int iterations, int quickIterations, int sizeMb, params string[] extra)
    {
        var keep = false;
        var values = new Dictionary<string, string>();
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--quick": iterations = quickIterations; break;
                case "--iterations" when i + 1 < args.Length: iterations = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--size-mb" when i + 1 < args.Length: sizeMb = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--keep": keep = true; break;
                case var name when extra.Contains(name) && i + 1 < args.Length: values[name] = args[++i]; break;
                case "-h" or "--help":
                    Console.WriteLine(usage);
                    return null;
                default:
                    Console.Error.WriteLine($"unknown argument '{args[i]}' (try --help)");
                    Environment.ExitCode = 2;
                    return null;
            }
        }
        if (iterations < 1 || sizeMb < 1)
        {
            Console.Error.WriteLine("--iterations and --size-mb must be >= 1");
            Environment.ExitCode = 2;
            return null;
        }
        return new BenchArgs(iterations, sizeMb, keep, values);
    }

    /// <summary>Runs the benchmark in a fresh <c>/tmp/&lt;prefix&gt;-…</c> root (short: unix socket paths must stay under 107 bytes).</summary>
    public static async Task<int> RunAsync<TBench>(string rootPrefix, bool keep, Func<string, TBench> create, Func<TBench, CancellationToken, Task> run)
        where TBench : IAsyncDisposable
    {
        Console.SetOut(new InfoFilter(Console.Out));
        using var cts = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; cts.Cancel(); };
        var root = Path.Combine("/tmp", $"{rootPrefix}-{Guid.NewGuid():N}"[..(rootPrefix.Length + 9)]);
        Directory.CreateDirectory(root);
        var bench = create(root);
        try
        {
            await run(bench, cts.Token);
            return 0;
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested)
        {
            Console.Error.WriteLine("cancelled");
            return 130;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"benchmark failed: {e}");
            return 1;
        }
        finally
        {
            await bench.DisposeAsync();
            if (!keep) Cleanup.Remove(root);
            else Console.WriteLine($"kept {root}");
        }
    }
}
