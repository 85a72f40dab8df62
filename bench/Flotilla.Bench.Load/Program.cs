// `docker load` of a ~50 MB single-layer image through Flotilla (in-process all-in-one host, real docker CLI)
// against `podman load` of the same archive, interleaved in one run. See bench/README.md.
using System.Diagnostics;
using System.Formats.Tar;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Akka.Actor;
using Flotilla.Bench.Common;
using Flotilla.Cli.Hosting;
using Flotilla.Cluster.Images;
using Flotilla.Contracts;
using Flotilla.Contracts.Images;
using Flotilla.NodeRuntime.Host;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Storage;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using static Flotilla.Bench.Common.BenchStats;

namespace Flotilla.Bench.Load;

public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        var options = BenchProgram.Parse(args,
            "usage: Flotilla.Bench.Load [--iterations N (default 5)] [--quick (N=2)] [--size-mb MB (default 50)] [--keep]",
            iterations: 5, quickIterations: 2, sizeMb: 50);
        if (options is null) return Environment.ExitCode;
        return await BenchProgram.RunAsync("flb", options.Keep, root => new LoadBench(root, options.Iterations, options.SizeMb),
            (bench, ct) => bench.RunAsync(ct));
    }
}

internal sealed class LoadBench(string root, int iterations, int sizeMb) : IAsyncDisposable
{
    private const string Repo = "localhost/flotilla-bench/load";
    private readonly string _archives = Path.Combine(root, "archives");
    private readonly string _flotillaData = Path.Combine(root, "flotilla") /* BenchFlotilla.DataRoot */;
    private readonly string _podmanRoot = Path.Combine(root, "podman");
    private BenchFlotilla? _flotilla;
    private int DockerPort => _flotilla!.DockerPort;

    public async Task RunAsync(CancellationToken ct)
    {
        Console.WriteLine($"Flotilla load benchmark: {iterations} iteration(s), ~{sizeMb} MB single-layer image, {Environment.ProcessorCount} cores, temp root {root}");
        Console.WriteLine($"load average at start: {LoadAverage()}");

        // 1. Archives: each iteration loads a never-seen image (distinct random content) on both sides, so neither
        //    side can skip work because of something left from an earlier iteration; both sides load the same file.
        Directory.CreateDirectory(_archives);
        var sw = Stopwatch.StartNew();
        var warm = TestImage.Write(_archives, "warm", Repo + ":warm", 1, seed: 1000);
        var measured = Enumerable.Range(1, iterations).Select(i => TestImage.Write(_archives, $"i{i}", $"{Repo}:i{i}", sizeMb, seed: i)).ToList();
        var phaseImages = Enumerable.Range(1, iterations).Select(i => TestImage.Write(_archives, $"p{i}", $"{Repo}:p{i}", sizeMb, seed: 500 + i)).ToList();
        Console.WriteLine($"[setup] wrote {1 + 2 * iterations} docker-archives in {sw.Elapsed.TotalSeconds:F1} s: " +
            $"{measured[0].ArchiveBytes / 1e6:F1} MB each (layer {measured[0].LayerBytes / 1e6:F1} MB uncompressed: /bin/busybox + {sizeMb} x 1 MiB random files), " +
            $"gzip would not shrink them");

        // 2. Flotilla: embedded PostgreSQL + the all-in-one host (as `flotilla up` builds it) on free ports.
        Console.WriteLine("[flotilla] starting embedded PostgreSQL and the all-in-one host ...");
        _flotilla = await BenchFlotilla.StartAsync(root, ct);
        var version = await DockerAsync(ct, "version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}})");
        Console.WriteLine($"[flotilla] up: Docker API tcp://127.0.0.1:{DockerPort}, server {version.Stdout.Trim()}, docker CLI " +
            (await Proc.RunAsync("docker", ["version", "--format", "{{.Client.Version}}"], null, ct)).Stdout.Trim());

        // 3. Podman: private storage under the temp root, default overlay driver if it works here, else vfs.
        var driver = await PickPodmanDriverAsync(ct);
        Console.WriteLine($"[podman] {(await PodmanAsync(ct, "--version")).Stdout.Trim()}, storage driver {driver}, root {_podmanRoot}");

        // 4. Warm-up on both sides (JIT of the load path, podman's storage init); not timed.
        Console.WriteLine("[warm-up] loading a 1 MB image on both sides ...");
        await FlotillaLoadAsync(warm, ct);
        await FlotillaRmiAsync(warm, ct);
        await PodmanLoadAsync(warm, ct);
        await PodmanRmiAsync(warm, ct);

        // 5. Interleaved measurements; the order alternates so neither side always runs on a warmer page cache.
        // Each iteration also replays the endpoint's steps in-process on its own never-seen image (see 7.).
        var flotilla = new List<double>();
        var podman = new List<double>();
        var phases = new List<Phases>();
        for (var i = 0; i < iterations; i++)
        {
            var image = measured[i];
            double f, p;
            if (i % 2 == 0) { f = await FlotillaLoadAsync(image, ct); p = await PodmanLoadAsync(image, ct); }
            else { p = await PodmanLoadAsync(image, ct); f = await FlotillaLoadAsync(image, ct); }
            if (i == 0) await CheckSameImageIdAsync(image, ct);
            flotilla.Add(f);
            podman.Add(p);
            Console.WriteLine($"[iteration {i + 1}/{iterations}] flotilla {f:F3} s   podman {p:F3} s   ratio {f / p:F2}   ({(i % 2 == 0 ? "flotilla" : "podman")} first)");
            await FlotillaRmiAsync(image, ct);
            await PodmanRmiAsync(image, ct);
            phases.Add(await PhasesAsync(phaseImages[i], ct));
        }

        // 6. What `rmi` leaves behind, and what that does to a second load of the same image.
        var leftF = FlotillaLeftovers();
        var leftP = PodmanLeftovers();
        Console.WriteLine($"[after rmi] flotilla data root still holds {leftF}");
        Console.WriteLine($"[after rmi] podman root still holds {leftP}");
        var reloadF = await FlotillaLoadAsync(measured[0], ct);
        var reloadP = await PodmanLoadAsync(measured[0], ct);
        Console.WriteLine($"[reload of iteration 1's image after rmi] flotilla {reloadF:F3} s   podman {reloadP:F3} s");
        await FlotillaRmiAsync(measured[0], ct);
        await PodmanRmiAsync(measured[0], ct);

        // 7. Where Flotilla's time goes: PhasesAsync (called in every iteration above) runs the endpoint's steps in-process
        //    against the host's own store and image service, each on a never-seen image; plus a copy and a SHA-256 alone.
        // Fixed per-command costs: a docker CLI round trip to the (already running) host, and a podman process that
        // opens its storage and lists images (podman has no daemon: every command pays this).
        var docker = new List<double>();
        var podmanNoop = new List<double>();
        for (var i = 0; i < 3; i++)
        {
            docker.Add((await TimedAsync(() => DockerAsync(ct, "version", "--format", "{{.Server.Version}}"))).Seconds);
            podmanNoop.Add((await TimedAsync(() => PodmanAsync(ct, "images", "-q"))).Seconds);
        }

        Report(flotilla, podman, reloadF, reloadP, leftF, leftP, phases, Median(docker), Median(podmanNoop), driver, measured[0].ArchiveBytes / 1e6);
    }

    // ---------------------------------------------------------------------------------------------------------------

    private void Report(List<double> f, List<double> p, double reloadF, double reloadP, string leftF, string leftP,
        List<Phases> phases, double dockerNoop, double podmanNoop, string driver, double archiveMb)
    {
        var mf = Median(f);
        var mp = Median(p);
        var ratio = mf / mp;
        var layerMb = archiveMb;
        Console.WriteLine();
        Console.WriteLine($"load average at end: {LoadAverage()} (other work on this machine skews every row)");
        Console.WriteLine();
        Console.WriteLine($"measurement ({archiveMb:F1} MB archive)                  median s   MB/s   samples (s)");
        Console.WriteLine("------------------------------------------------------------------------------------------------");
        Console.WriteLine($"{"flotilla: docker load (never-seen image)",-48} {mf,9:F3} {layerMb / mf,6:F0}   {Samples(f)}");
        Console.WriteLine($"{$"podman: podman load ({driver}, never-seen image)",-48} {mp,9:F3} {layerMb / mp,6:F0}   {Samples(p)}");
        Console.WriteLine($"{"flotilla: reload after rmi (blobs kept)",-48} {reloadF,9:F3} {layerMb / reloadF,6:F0}");
        Console.WriteLine($"{"podman: reload after rmi",-48} {reloadP,9:F3} {layerMb / reloadP,6:F0}");
        Console.WriteLine();
        Console.WriteLine("after rmi:");
        Console.WriteLine($"  flotilla: {leftF}");
        Console.WriteLine($"  podman:   {leftP}");
        Console.WriteLine();
        Console.WriteLine("flotilla phases (in-process replay of POST /images/load on the host's store, never-seen image), seconds:");
        Console.WriteLine("  run     store.LoadAsync (~spool copy ~ingest+DiffID)  UnpackAsync  DescribeAsync  RegisterAsync    sum");
        void Row(string label, Phases ph) =>
            Console.WriteLine($"  {label,-6} {ph.Load,15:F3} ({ph.SpoolCopy,11:F3} {ph.Load - ph.SpoolCopy,14:F3})  {ph.Unpack,11:F3}  {ph.Describe,13:F3}  {ph.Register,13:F3}  {ph.Sum,5:F3}");
        foreach (var (ph, i) in phases.Select((ph, i) => (ph, i))) Row($"p{i + 1}", ph);
        double M(Func<Phases, double> f) => Median(phases.Select(f).ToList());
        var med = new Phases(M(x => x.Load), M(x => x.SpoolCopy), M(x => x.Unpack), M(x => x.Describe), M(x => x.Register), M(x => x.Sha256), M(x => x.CopyFsync));
        Row("median", med);
        Console.WriteLine("  (~spool copy: the spool step's file copy timed on its own just before; ~ingest+DiffID: LoadAsync minus that)");
        var sumMedian = Median(phases.Select(x => x.Sum).ToList());
        Console.WriteLine($"  reference on this machine: SHA-256 of the layer in memory {Median(phases.Select(x => x.Sha256).ToList()):F3} s; " +
            $"plain copy of the archive to a file + fsync {Median(phases.Select(x => x.CopyFsync).ToList()):F3} s; " +
            $"`docker version` round trip {dockerNoop:F3} s; `podman images -q` {podmanNoop:F3} s");
        Console.WriteLine($"  docker load median {mf:F3} s - median in-process sum {sumMedian:F3} s = {mf - sumMedian:F3} s left for CLI start, " +
            $"reading + HTTP upload of the archive, response{(mf - sumMedian < 0.02 ? " (within noise: overlapped with the spool, which reads the request body as it arrives)" : "")}");
        Console.WriteLine();
        Console.WriteLine($"ratio flotilla / podman (median load time, lower is better, goal <= 1.0): {ratio:F2}");
        Console.WriteLine();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"SUMMARY load size={sizeMb}MB n={f.Count} flotilla={mf:F3}s podman={mp:F3}s ratio={ratio:F2} podmanDriver={driver} " +
            $"reloadAfterRmi flotilla={reloadF:F3}s podman={reloadP:F3}s goal={(ratio <= 1.0 ? "met" : "missed")}"));
    }

    // ---------------------------------------------------------------------------------------------------------------

    private Task<ProcResult> DockerAsync(CancellationToken ct, params string[] args) => _flotilla!.DockerAsync(ct, args);

    private BenchPodman? _podman;

    private Task<ProcResult> PodmanAsync(CancellationToken ct, params string[] args) => _podman!.RunAsync(ct, args);

    private Task<string> PickPodmanDriverAsync(CancellationToken ct) => (_podman = new BenchPodman(_podmanRoot)).PickDriverAsync(ct);

    private async Task<double> FlotillaLoadAsync(TestImage image, CancellationToken ct)
    {
        var (r, s) = await TimedAsync(() => DockerAsync(ct, "load", "-i", image.ArchivePath));
        Expect(r, "docker load", "Loaded image: " + image.Tag);
        return s;
    }

    private async Task FlotillaRmiAsync(TestImage image, CancellationToken ct) => Expect(await DockerAsync(ct, "rmi", image.Tag), "docker rmi", "Deleted");

    private async Task<double> PodmanLoadAsync(TestImage image, CancellationToken ct)
    {
        var (r, s) = await TimedAsync(() => PodmanAsync(ct, "load", "-i", image.ArchivePath));
        Expect(r, "podman load", image.Tag);
        return s;
    }

    private async Task PodmanRmiAsync(TestImage image, CancellationToken ct) => Expect(await PodmanAsync(ct, "rmi", image.Tag), "podman rmi", "");

    private async Task CheckSameImageIdAsync(TestImage image, CancellationToken ct)
    {
        var f = (await DockerAsync(ct, "image", "inspect", "--format", "{{.Id}}", image.Tag)).Stdout.Trim();
        var p = (await PodmanAsync(ct, "image", "inspect", "--format", "{{.Id}}", image.Tag)).Stdout.Trim();
        if (f != image.ConfigDigest || p != image.ConfigDigest[7..])
            throw new InvalidOperationException($"image ids differ: flotilla {f}, podman {p}, config {image.ConfigDigest}");
    }

    private static void Expect(ProcResult r, string what, string needle)
    {
        if (r.ExitCode != 0 || !(r.Stdout + r.Stderr).Contains(needle, StringComparison.Ordinal))
            throw new InvalidOperationException($"{what} failed (exit {r.ExitCode}): {r.Stdout}{r.Stderr}");
    }

    private static async Task<(T Result, double Seconds)> TimedAsync<T>(Func<Task<T>> action)
    {
        var start = Stopwatch.GetTimestamp();
        var result = await action();
        return (result, Stopwatch.GetElapsedTime(start).TotalSeconds);
    }

    private string FlotillaLeftovers()
    {
        var blobs = new DirectoryInfo(Path.Combine(_flotillaData, "content", "blobs", "sha256")).GetFiles();
        var layers = Directory.GetDirectories(Path.Combine(_flotillaData, "snapshots", "l"));
        return $"{blobs.Length} content blobs ({blobs.Sum(b => b.Length) / 1e6:F0} MB) and {layers.Length} unpacked layer snapshots " +
            $"({DirBytes(Path.Combine(_flotillaData, "snapshots", "l")) / 1e6:F0} MB): rmi removes the image record only, no blob or snapshot GC";
    }

    private string PodmanLeftovers()
    {
        var overlay = Path.Combine(_podmanRoot, "root", _podman!.Driver!);
        var layers = Directory.Exists(overlay) ? Directory.GetDirectories(overlay).Count(d => Path.GetFileName(d) != "l") : 0;
        return $"{layers} layer dirs, {DirBytes(Path.Combine(_podmanRoot, "root")) / 1e6:F0} MB under --root: rmi deletes the layers";
    }

    private static long DirBytes(string dir) =>
        !Directory.Exists(dir) ? 0
            : new DirectoryInfo(dir).EnumerateFiles("*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 })
                .Where(f => f.LinkTarget is null).Sum(f => f.Length);

    // ---------------------------------------------------------------------------------------------------------------

    private sealed record Phases(double Load, double SpoolCopy, double Unpack, double Describe, double Register, double Sha256, double CopyFsync)
    {
        public double Sum => Load + Unpack + Describe + Register;
    }

    /// <summary>The steps of POST /images/load (ImageEndpoints.LoadAsync), each timed, on the host's own services.</summary>
    private async Task<Phases> PhasesAsync(TestImage image, CancellationToken ct)
    {
        var services = _flotilla!.App.Services;
        var store = services.GetRequiredService<NodeImageStore>();
        var images = services.GetRequiredService<ImageService>();

        // Reference: the spool step's copy on its own (same buffer and file options as ImageArchiveReader), and the
        // same copy with an fsync, and SHA-256 of the layer bytes in memory.
        var spoolFile = Path.Combine(root, "spool-copy");
        var start = Stopwatch.GetTimestamp();
        await using (var input = new FileStream(image.ArchivePath, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.Asynchronous | FileOptions.SequentialScan))
        await using (var output = new FileStream(spoolFile, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous))
            await input.CopyToAsync(output, 1 << 16, ct);
        var spoolCopy = Stopwatch.GetElapsedTime(start).TotalSeconds;
        File.Delete(spoolFile);
        start = Stopwatch.GetTimestamp();
        await using (var input = new FileStream(image.ArchivePath, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.Asynchronous | FileOptions.SequentialScan))
        await using (var output = new FileStream(spoolFile, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous))
        {
            await input.CopyToAsync(output, 1 << 16, ct);
            output.Flush(flushToDisk: true);
        }
        var copyFsync = Stopwatch.GetElapsedTime(start).TotalSeconds;
        File.Delete(spoolFile);
        var layerBytes = await File.ReadAllBytesAsync(image.LayerPath, ct);
        SHA256.HashData(layerBytes); // first touch of the buffer and JIT: not part of the figure
        start = Stopwatch.GetTimestamp();
        SHA256.HashData(layerBytes);
        var sha = Stopwatch.GetElapsedTime(start).TotalSeconds;
        layerBytes = null;

        start = Stopwatch.GetTimestamp();
        IReadOnlyList<LoadedImage> loaded;
        await using (var archive = new FileStream(image.ArchivePath, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.Asynchronous))
            loaded = await store.LoadAsync(archive, ct);
        var load = Stopwatch.GetElapsedTime(start).TotalSeconds;

        start = Stopwatch.GetTimestamp();
        foreach (var l in loaded) await store.UnpackAsync(l.Layers, ct);
        var unpack = Stopwatch.GetElapsedTime(start).TotalSeconds;

        start = Stopwatch.GetTimestamp();
        var contents = new List<ImageContent>();
        foreach (var l in loaded) contents.Add(await store.DescribeAsync(l, ct));
        var describe = Stopwatch.GetElapsedTime(start).TotalSeconds;

        start = Stopwatch.GetTimestamp();
        var origin = new RequestOrigin("bench", Guid.NewGuid().ToString("N"));
        for (var i = 0; i < loaded.Count; i++)
            await images.RegisterAsync(new RegisterImage(loaded[i].ImageId.ToString(), ImageSource.Loaded, contents[i], "bench-node", null,
                loaded[i].RepoTags, origin), ct);
        var register = Stopwatch.GetElapsedTime(start).TotalSeconds;

        await FlotillaRmiAsync(image, ct); // proves the replay registered the image like the endpoint does
        return new Phases(load, spoolCopy, unpack, describe, register, sha, copyFsync);
    }

    // ---------------------------------------------------------------------------------------------------------------

    public async ValueTask DisposeAsync()
    {
        if (_flotilla is not null) await _flotilla.DisposeAsync();
    }
}

/// <summary>A docker-archive (manifest.json + config + one uncompressed layer) written by this runner.</summary>
internal sealed record TestImage(string Tag, string ArchivePath, string LayerPath, string ConfigDigest, long ArchiveBytes, long LayerBytes)
{
    /// <summary>rootfs: /bin/busybox (+ /bin/sh link) and <paramref name="mb"/> files of 1 MiB random bytes.</summary>
    public static TestImage Write(string dir, string name, string tag, int mb, int seed)
    {
        var random = new Random(seed);
        var layerPath = Path.Combine(dir, name + "-layer.tar");
        var mtime = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        using (var file = File.Create(layerPath))
        using (var tar = new TarWriter(file, TarEntryFormat.Pax, leaveOpen: false))
        {
            foreach (var d in new[] { "bin/", "data/" })
                tar.WriteEntry(new PaxTarEntry(TarEntryType.Directory, d) { Mode = (UnixFileMode)0b111_101_101, ModificationTime = mtime });
            var busybox = File.ReadAllBytes("/bin/busybox");
            tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "bin/busybox")
            { Mode = (UnixFileMode)0b111_101_101, ModificationTime = mtime, DataStream = new MemoryStream(busybox) });
            tar.WriteEntry(new PaxTarEntry(TarEntryType.SymbolicLink, "bin/sh") { LinkName = "busybox", ModificationTime = mtime });
            var buffer = new byte[1 << 20];
            for (var i = 0; i < mb; i++)
            {
                random.NextBytes(buffer);
                tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, $"data/random-{i:D4}.bin")
                { Mode = (UnixFileMode)0b110_100_100, ModificationTime = mtime, DataStream = new MemoryStream(buffer, writable: false) });
            }
        }
        var layerBytes = new FileInfo(layerPath).Length;
        string diffId;
        using (var layer = File.OpenRead(layerPath)) diffId = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(layer));

        var config = JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, object>
        {
            ["architecture"] = HostPlatform.Architecture,
            ["os"] = "linux",
            ["created"] = "2026-01-01T00:00:00Z",
            ["config"] = new Dictionary<string, object> { ["Cmd"] = new[] { "/bin/sh" } },
            ["rootfs"] = new Dictionary<string, object> { ["type"] = "layers", ["diff_ids"] = new[] { diffId } },
            ["history"] = new[] { new Dictionary<string, object> { ["created"] = "2026-01-01T00:00:00Z", ["created_by"] = $"flotilla load bench {name}" } },
        });
        var configHex = Convert.ToHexStringLower(SHA256.HashData(config));
        var layerName = $"{diffId[7..]}/layer.tar";
        var manifest = JsonSerializer.SerializeToUtf8Bytes(new[]
        {
            new Dictionary<string, object> { ["Config"] = configHex + ".json", ["RepoTags"] = new[] { tag }, ["Layers"] = new[] { layerName } },
        });

        var archivePath = Path.Combine(dir, name + ".tar");
        using (var file = File.Create(archivePath))
        using (var tar = new TarWriter(file, TarEntryFormat.Ustar, leaveOpen: false))
        {
            tar.WriteEntry(new UstarTarEntry(TarEntryType.Directory, diffId[7..] + "/") { Mode = (UnixFileMode)0b111_101_101, ModificationTime = mtime });
            tar.WriteEntry(new UstarTarEntry(TarEntryType.RegularFile, layerName)
            { Mode = (UnixFileMode)0b110_100_100, ModificationTime = mtime, DataStream = File.OpenRead(layerPath) });
            tar.WriteEntry(new UstarTarEntry(TarEntryType.RegularFile, configHex + ".json")
            { Mode = (UnixFileMode)0b110_100_100, ModificationTime = mtime, DataStream = new MemoryStream(config) });
            tar.WriteEntry(new UstarTarEntry(TarEntryType.RegularFile, "manifest.json")
            { Mode = (UnixFileMode)0b110_100_100, ModificationTime = mtime, DataStream = new MemoryStream(manifest) });
        }
        return new TestImage(tag, archivePath, layerPath, "sha256:" + configHex, new FileInfo(archivePath).Length, layerBytes);
    }
}
