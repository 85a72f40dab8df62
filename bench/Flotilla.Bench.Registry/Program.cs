// skopeo push and pull of a ~50 MB single-layer image: Flotilla's built-in registry (in-process all-in-one host)
// against Debian's docker-registry (CNCF distribution 2.8.2), interleaved in one run. See bench/README.md.
using System.Diagnostics;
using System.Formats.Tar;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Flotilla.Bench.Common;
using static Flotilla.Bench.Common.BenchStats;

namespace Flotilla.Bench.Registry;

public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        var options = BenchProgram.Parse(args,
            "usage: Flotilla.Bench.Registry [--iterations N (default 5)] [--quick (N=2)] [--size-mb MB (default 50)] [--keep]",
            iterations: 5, quickIterations: 2, sizeMb: 50);
        if (options is null) return Environment.ExitCode;
        return await BenchProgram.RunAsync("flr", options.Keep, root => new RegistryBench(root, options.Iterations, options.SizeMb),
            (bench, ct) => bench.RunAsync(ct));
    }
}

internal sealed class RegistryBench(string root, int iterations, int sizeMb) : IAsyncDisposable
{
    private BenchFlotilla? _flotilla;
    private Process? _distribution;
    private int _distributionPort;

    private NullRegistry? _null;

    private enum Side { Flotilla, Distribution, Floor }

    public async Task RunAsync(CancellationToken ct)
    {
        Console.WriteLine($"Flotilla registry benchmark: skopeo copy of a ~{sizeMb} MB single-layer image, {iterations} iteration(s), " +
            $"{Environment.ProcessorCount} cores, temp root {root}");
        Console.WriteLine($"load average at start: {LoadAverage()}");
        Console.WriteLine($"skopeo: {(await Proc.RunAsync("skopeo", ["--version"], null, ct)).Stdout.Trim()}");

        // Each push is of a never-seen image (distinct random content), on both sides, so no side can answer
        // "blob exists"; both sides push the same OCI layout.
        var sw = Stopwatch.StartNew();
        var images = Enumerable.Range(0, iterations + 1).Select(i => OciLayoutImage.Write(Path.Combine(root, "images", $"i{i}"), sizeMb, seed: i)).ToList();
        Console.WriteLine($"[setup] wrote {images.Count} OCI layouts in {sw.Elapsed.TotalSeconds:F1} s, layer {images[0].LayerBytes / 1e6:F1} MB (gzip of random data)");

        Console.WriteLine("[flotilla] starting embedded PostgreSQL and the all-in-one host ...");
        _flotilla = await BenchFlotilla.StartAsync(root, ct);
        await WaitForV2Async(_flotilla.RegistryPort, ct);
        Console.WriteLine($"[flotilla] registry on 127.0.0.1:{_flotilla.RegistryPort}");
        await StartDistributionAsync(ct);
        Console.WriteLine($"[distribution] {(await Proc.RunAsync("docker-registry", ["--version"], null, ct)).Stdout.Trim()} on 127.0.0.1:{_distributionPort}");
        _null = await NullRegistry.StartAsync(FreePort(), images, ct);
        Console.WriteLine($"[floor] a server that does no work (discards pushes, sends the layout's files for pulls) on 127.0.0.1:{_null.Port}");

        // Warm-up (JIT, first connections, distribution's storage dirs): image 0 on both sides, not timed.
        foreach (var side in new[] { Side.Flotilla, Side.Distribution, Side.Floor })
        {
            await PushAsync(side, images[0], "warm", ct);
            await PullAsync(side, images[0], 0, "warm", ct);
        }

        var push = new Dictionary<Side, List<double>> { [Side.Flotilla] = [], [Side.Distribution] = [], [Side.Floor] = [] };
        var pull = new Dictionary<Side, List<double>> { [Side.Flotilla] = [], [Side.Distribution] = [], [Side.Floor] = [] };
        // The client's own floor: the same skopeo copy from the local OCI layout, no registry and no network. No
        // server can make a pull faster than this, so it bounds the ratio any registry can reach with this client.
        var floor = new List<double>();
        await LocalCopyAsync(images[0], ct);
        for (var i = 1; i <= iterations; i++)
        {
            var order = i % 2 == 1 ? new[] { Side.Flotilla, Side.Distribution, Side.Floor } : [Side.Floor, Side.Distribution, Side.Flotilla];
            foreach (var side in order)
            {
                push[side].Add(await PushAsync(side, images[i], $"i{i}", ct));
                pull[side].Add(await PullAsync(side, images[i], i, $"i{i}", ct));
            }
            floor.Add(await LocalCopyAsync(images[i], ct));
            Console.WriteLine($"[iteration {i}/{iterations}] push flotilla {push[Side.Flotilla][^1]:F3} s distribution {push[Side.Distribution][^1]:F3} s   " +
                $"pull flotilla {pull[Side.Flotilla][^1]:F3} s distribution {pull[Side.Distribution][^1]:F3} s   ({order[0].ToString().ToLowerInvariant()} first)");
        }

        var mb = images[0].LayerBytes / 1e6;
        Console.WriteLine();
        Console.WriteLine($"load average at end: {LoadAverage()} (other work on this machine skews every row)");
        Console.WriteLine();
        Console.WriteLine($"measurement ({mb:F1} MB layer)                          median s    MB/s   samples (s)");
        Console.WriteLine("------------------------------------------------------------------------------------------------");
        void Row(string label, List<double> xs) => Console.WriteLine($"{label,-48} {Median(xs),9:F3} {mb / Median(xs),7:F1}   {Samples(xs)}");
        Row("flotilla: skopeo copy oci: -> docker:// (push)", push[Side.Flotilla]);
        Row("distribution: skopeo copy oci: -> docker://", push[Side.Distribution]);
        Row("flotilla: skopeo copy docker:// -> oci: (pull)", pull[Side.Flotilla]);
        Row("distribution: skopeo copy docker:// -> oci:", pull[Side.Distribution]);
        Row("client floor: skopeo copy oci: -> oci: (no server)", floor);
        Row("floor: push to a server that does no work", push[Side.Floor]);
        Row("floor: pull from a server that does no work", pull[Side.Floor]);
        var pushRatio = Median(push[Side.Distribution]) / Median(push[Side.Flotilla]);
        var pullRatio = Median(pull[Side.Distribution]) / Median(pull[Side.Flotilla]);
        Console.WriteLine();
        Console.WriteLine("ratio = flotilla throughput / distribution throughput (higher is better; goal >= 1.5)");
        // What is left once the client's own work (and loopback HTTP) is taken away is the server's share: the
        // do-nothing server's time is the best any registry can be timed at here, so distribution's time over it is
        // the highest ratio any registry can reach against distribution with this client.
        var pushCeiling = Median(push[Side.Distribution]) / Median(push[Side.Floor]);
        var pullCeiling = Median(pull[Side.Distribution]) / Median(pull[Side.Floor]);
        foreach (var (what, times, ceiling) in new[] { ("push", push, pushCeiling), ("pull", pull, pullCeiling) })
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{what}: a registry taking no time at all would reach {ceiling:F2}x distribution with this client; above that floor " +
                $"flotilla takes {Median(times[Side.Flotilla]) - Median(times[Side.Floor]):F3} s, distribution {Median(times[Side.Distribution]) - Median(times[Side.Floor]):F3} s"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"SUMMARY registry size={sizeMb}MB n={iterations} push flotilla={mb / Median(push[Side.Flotilla]):F1}MB/s " +
            $"distribution={mb / Median(push[Side.Distribution]):F1}MB/s ratio={pushRatio:F2} " +
            $"pull flotilla={mb / Median(pull[Side.Flotilla]):F1}MB/s distribution={mb / Median(pull[Side.Distribution]):F1}MB/s ratio={pullRatio:F2} " +
            $"push-ceiling={pushCeiling:F2} pull-ceiling={pullCeiling:F2} goal={(pushRatio >= 1.5 && pullRatio >= 1.5 ? "met" : "missed")}"));
    }

    private async Task<double> LocalCopyAsync(OciLayoutImage image, CancellationToken ct)
    {
        var target = Path.Combine(root, "pulled", "local");
        if (Directory.Exists(target)) Directory.Delete(target, recursive: true);
        Directory.CreateDirectory(target);
        var start = Stopwatch.GetTimestamp();
        var r = await Proc.RunAsync("skopeo", ["copy", "--quiet", $"oci:{image.Dir}:latest", $"oci:{target}:latest"], null, ct);
        var seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        if (r.ExitCode != 0) throw new InvalidOperationException($"local copy failed: {r.Stderr}{r.Stdout}");
        Directory.Delete(target, recursive: true);
        return seconds;
    }

    private int Port(Side side) => side switch
    {
        Side.Flotilla => _flotilla!.RegistryPort,
        Side.Distribution => _distributionPort,
        _ => _null!.Port,
    };

    private async Task<double> PushAsync(Side side, OciLayoutImage image, string tag, CancellationToken ct)
    {
        var start = Stopwatch.GetTimestamp();
        var r = await Proc.RunAsync("skopeo", ["copy", "--quiet", "--dest-tls-verify=false", $"oci:{image.Dir}:latest",
            $"docker://127.0.0.1:{Port(side)}/{(side == Side.Floor ? "null" : "bench")}/registry:{tag}"], null, ct);
        var seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        if (r.ExitCode != 0) throw new InvalidOperationException($"push to {side} failed: {r.Stderr}{r.Stdout}");
        return seconds;
    }

    /// <summary>Pulls what was pushed as <paramref name="tag"/> (the floor serves layout <paramref name="index"/> instead).</summary>
    private async Task<double> PullAsync(Side side, OciLayoutImage image, int index, string tag, CancellationToken ct)
    {
        var target = Path.Combine(root, "pulled", $"{side}-{tag}");
        if (Directory.Exists(target)) Directory.Delete(target, recursive: true);
        Directory.CreateDirectory(target);
        var start = Stopwatch.GetTimestamp();
        var r = await Proc.RunAsync("skopeo", ["copy", "--quiet", "--src-tls-verify=false",
            side == Side.Floor ? $"docker://127.0.0.1:{Port(side)}/layout/{index}:latest" : $"docker://127.0.0.1:{Port(side)}/bench/registry:{tag}",
            $"oci:{target}:latest"], null, ct);
        var seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        if (r.ExitCode != 0) throw new InvalidOperationException($"pull from {side} failed: {r.Stderr}{r.Stdout}");
        // The pulled layer must be the pushed one, byte for byte.
        if (!File.Exists(Path.Combine(target, "blobs", "sha256", image.LayerDigest["sha256:".Length..])))
            throw new InvalidOperationException($"pull from {side} did not bring back layer {image.LayerDigest}");
        Directory.Delete(target, recursive: true);
        return seconds;
    }

    private async Task StartDistributionAsync(CancellationToken ct)
    {
        _distributionPort = FreePort();
        var dir = Path.Combine(root, "distribution");
        Directory.CreateDirectory(dir);
        var config = Path.Combine(dir, "config.yml");
        await File.WriteAllTextAsync(config, $"""
            version: 0.1
            log:
              level: error
            storage:
              filesystem:
                rootdirectory: {Path.Combine(dir, "data")}
              delete:
                enabled: true
            http:
              addr: 127.0.0.1:{_distributionPort}
            """, ct);
        var psi = new ProcessStartInfo("docker-registry") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("serve");
        psi.ArgumentList.Add(config);
        _distribution = Process.Start(psi) ?? throw new InvalidOperationException("could not start docker-registry");
        _ = _distribution.StandardOutput.ReadToEndAsync(CancellationToken.None);
        _ = _distribution.StandardError.ReadToEndAsync(CancellationToken.None);
        await WaitForV2Async(_distributionPort, ct);
    }

    private static async Task WaitForV2Async(int port, CancellationToken ct)
    {
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        for (var i = 0; i < 100; i++)
        {
            try
            {
                using var response = await client.GetAsync($"http://127.0.0.1:{port}/v2/", ct);
                if ((int)response.StatusCode is 200 or 401) return;
            }
            catch (HttpRequestException)
            {
            }
            await Task.Delay(100, ct);
        }
        throw new InvalidOperationException($"no registry answered on 127.0.0.1:{port}/v2/");
    }

    public async ValueTask DisposeAsync()
    {
        if (_distribution is { HasExited: false })
        {
            _distribution.Kill(entireProcessTree: true);
            await _distribution.WaitForExitAsync();
        }
        _distribution?.Dispose();
        _distribution = null;
        if (_flotilla is not null) await _flotilla.DisposeAsync();
        _flotilla = null;
        if (_null is not null) await _null.DisposeAsync();
        _null = null;
    }
}

/// <summary>An OCI image layout (<c>oci-layout</c>, <c>index.json</c>, blobs) with one gzip layer of random files.</summary>
internal sealed record OciLayoutImage(string Dir, string LayerDigest, long LayerBytes, string ManifestDigest)
{
    public static OciLayoutImage Write(string dir, int mb, int seed)
    {
        var blobs = Path.Combine(dir, "blobs", "sha256");
        Directory.CreateDirectory(blobs);
        var random = new Random(seed);
        var layerTemp = Path.Combine(dir, "layer.tar");
        using (var file = File.Create(layerTemp))
        using (var tar = new TarWriter(file, TarEntryFormat.Pax, leaveOpen: false))
        {
            tar.WriteEntry(new PaxTarEntry(TarEntryType.Directory, "data/") { Mode = (UnixFileMode)0b111_101_101 });
            var chunk = new byte[1 << 20];
            for (var i = 0; i < mb; i++)
            {
                random.NextBytes(chunk);
                tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, $"data/f{i:D4}")
                {
                    Mode = (UnixFileMode)0b110_100_100,
                    DataStream = new MemoryStream(chunk, writable: false),
                });
            }
        }
        // Gzip (fastest level) as registries hold layers: skopeo would otherwise compress an uncompressed layer on
        // every push, and the benchmark would time skopeo's gzip rather than the registry.
        var layerTar = File.ReadAllBytes(layerTemp);
        File.Delete(layerTemp);
        var diffId = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(layerTar));
        var gzipped = new MemoryStream();
        using (var gzip = new System.IO.Compression.GZipStream(gzipped, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true))
            gzip.Write(layerTar);
        var layer = Publish(blobs, gzipped.ToArray());
        var layerBytes = new FileInfo(Path.Combine(blobs, layer[7..])).Length;
        var config = Publish(blobs, Encoding.UTF8.GetBytes(
            $$$"""{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["{{{diffId}}}"]}}"""));
        var configBytes = new FileInfo(Path.Combine(blobs, config[7..])).Length;
        var manifestJson = Encoding.UTF8.GetBytes(
            $$$"""{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{{{config}}}","size":{{{configBytes}}}},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{{{layer}}}","size":{{{layerBytes}}}}]}""");
        var manifest = Publish(blobs, manifestJson);
        File.WriteAllText(Path.Combine(dir, "oci-layout"), """{"imageLayoutVersion":"1.0.0"}""");
        File.WriteAllText(Path.Combine(dir, "index.json"),
            $$$"""{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{{{manifest}}}","size":{{{manifestJson.Length}}},"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}""");
        return new OciLayoutImage(dir, layer, layerBytes, manifest);
    }

    private static string Publish(string blobs, byte[] content)
    {
        var hex = Convert.ToHexStringLower(SHA256.HashData(content));
        File.WriteAllBytes(Path.Combine(blobs, hex), content);
        return "sha256:" + hex;
    }
}
