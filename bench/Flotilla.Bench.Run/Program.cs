// `docker run --rm --network none IMG /bin/true` through Flotilla (in-process all-in-one host, real docker CLI) against
// `podman run --rm --network none` and dockerd 20.10 (Debian's docker.io, unpacked into the temp dir), interleaved in one
// run. See bench/README.md.
using System.Diagnostics;
using System.Formats.Tar;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Akka.Actor;
using Flotilla.Bench.Common;
using Flotilla.Cli.Hosting;
using Flotilla.NodeRuntime.Host;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using static Flotilla.Bench.Common.BenchStats;

namespace Flotilla.Bench.Run;

public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        var options = BenchProgram.Parse(args,
            "usage: Flotilla.Bench.Run [--iterations N (default 10)] [--quick (N=3)] [--debs DIR (docker.io + containerd .debs; default: apt-get download)] [--keep]\n" +
            "       Flotilla.Bench.Run --containers N (default 1000) [--parallel P (default 8)] [--keep]   N long-running containers on one host",
            iterations: 10, quickIterations: 3, sizeMb: 1, "--debs", "--containers", "--parallel");
        if (options is null) return Environment.ExitCode;
        if (options.Values.TryGetValue("--containers", out var n))
        {
            var parallel = options.Values.TryGetValue("--parallel", out var p) ? int.Parse(p, CultureInfo.InvariantCulture) : 8;
            return await BenchProgram.RunAsync("frm", options.Keep,
                root => new ManyContainersBench(root, int.Parse(n, CultureInfo.InvariantCulture), parallel), (bench, ct) => bench.RunAsync(ct));
        }
        var debs = options.Values.TryGetValue("--debs", out var dir) ? Path.GetFullPath(dir) : null;
        // Short root: the embedded PostgreSQL's and containerd's unix socket paths must stay under 107 bytes.
        return await BenchProgram.RunAsync("frb", options.Keep, root => new RunBench(root, options.Iterations, debs),
            (bench, ct) => bench.RunAsync(ct));
    }
}

internal sealed class RunBench(string root, int iterations, string? debsDir) : IAsyncDisposable
{
    private const string Image = "localhost/flotilla-bench/run:latest";
    private readonly string _flotillaData = Path.Combine(root, "flotilla") /* BenchFlotilla.DataRoot */;
    private readonly string _podmanRoot = Path.Combine(root, "podman");
    private readonly string _dockerd = Path.Combine(root, "dockerd");
    private BenchFlotilla? _flotilla;
    private int DockerPort => _flotilla!.DockerPort;
    private Process? _dockerdProcess;
    private string? _podmanDriver;
    private bool _fallback; // attached `docker run` does not work through Flotilla: all three measured as run -d --rm + wait

    private string DockerdSocket => Path.Combine(_dockerd, "docker.sock");

    public async Task RunAsync(CancellationToken ct)
    {
        Console.WriteLine($"Flotilla run benchmark: `run --rm --network none {Image} /bin/true`, {iterations} iteration(s), " +
            $"{Environment.ProcessorCount} cores, temp root {root}");
        Console.WriteLine($"load average at start: {LoadAverage()}");

        // 1. The image: /bin/busybox with /bin/true and /bin/sh links, as a rootfs tar for `docker import` / `podman import`.
        var rootfsTar = Path.Combine(root, "rootfs.tar");
        WriteRootfs(rootfsTar);

        // 2. Flotilla: embedded PostgreSQL + the all-in-one host (as `flotilla up` builds it) on free ports.
        Console.WriteLine("[flotilla] starting embedded PostgreSQL and the all-in-one host ...");
        _flotilla = await BenchFlotilla.StartAsync(root, ct);
        var fv = await Check(await Flotilla(ct, "version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}})"), "docker version (flotilla)");
        Console.WriteLine($"[flotilla] up: Docker API tcp://127.0.0.1:{DockerPort}, server {fv.Stdout.Trim()}, docker CLI " +
            (await Proc.RunAsync("docker", ["version", "--format", "{{.Client.Version}}"], null, ct)).Stdout.Trim());
        await Check(await Flotilla(ct, "import", rootfsTar, Image), "docker import (flotilla)");

        // 3. dockerd 20.10 from Debian's docker.io, unpacked (not installed); it starts its own managed containerd.
        await StartDockerdAsync(ct);
        await Check(await Dockerd(ct, "import", rootfsTar, Image), "docker import (dockerd)");

        // 4. podman with private storage under the temp root.
        _podmanDriver = await PickPodmanDriverAsync(ct);
        var runtime = (await Proc.RunAsync("runc", ["--version"], null, ct)).Stdout.Trim().Split('\n')[0];
        Console.WriteLine($"[podman] {(await Podman(ct, "--version")).Stdout.Trim()}, storage driver {_podmanDriver}, OCI runtime {runtime} (`run {string.Join(' ', PodmanRunArgs)}`: see PodmanRunArgs)");
        await Check(await Podman(ct, "import", rootfsTar, Image), "podman import");

        // 5. Warm-up, one run each (JIT of Flotilla's run path, podman's storage init, dockerd's caches); not timed.
        //    An attached run through Flotilla that fails or hangs switches every engine to `run -d --rm` + `wait`.
        Console.WriteLine("[warm-up] one run on each engine ...");
        var warm = await Timed(() => Flotilla(ct, "run", "--rm", "--network", "none", Image, "/bin/true"), TimeSpan.FromSeconds(60));
        if (warm.Result is not { ExitCode: 0 })
        {
            _fallback = true;
            Console.WriteLine($"[warm-up] ATTACHED `docker run` THROUGH FLOTILLA FAILED ({(warm.Result is null ? "no exit within 60 s" : $"exit {warm.Result.ExitCode}: {warm.Result.Stderr.Trim()}")}); " +
                "FALLBACK: every engine is measured as `run -d --rm` + `wait`");
            await RunOnce(Engine.Flotilla, ct);
        }
        await RunOnce(Engine.Dockerd, ct);
        await RunOnce(Engine.Podman, ct);

        // 6. Interleaved measurements; the starting engine rotates so none always runs right after the same neighbour.
        var samples = new Dictionary<Engine, List<double>> { [Engine.Flotilla] = [], [Engine.Dockerd] = [], [Engine.Podman] = [] };
        Engine[] engines = [Engine.Flotilla, Engine.Dockerd, Engine.Podman];
        for (var i = 0; i < iterations; i++)
        {
            var order = Enumerable.Range(0, 3).Select(k => engines[(i + k) % 3]).ToArray();
            foreach (var e in order) samples[e].Add(await RunOnce(e, ct));
            Console.WriteLine($"[iteration {i + 1}/{iterations}] flotilla {samples[Engine.Flotilla][^1]:F3} s   dockerd {samples[Engine.Dockerd][^1]:F3} s   " +
                $"podman {samples[Engine.Podman][^1]:F3} s   (order {string.Join(",", order).ToLowerInvariant()})");
        }
        await CheckNoLeftoversAsync(ct);

        // 7. Where the time goes: the API calls of a run, timed one by one over HTTP against Flotilla and dockerd, plus
        //    fixed costs (a CLI round trip, podman's process start) and runc alone on the same rootfs.
        Console.WriteLine("[phases] timing the API calls individually ...");
        var flotillaApi = ApiClient.Tcp(DockerPort);
        var dockerdApi = ApiClient.Unix(DockerdSocket);
        var phasesF = new List<Phases>();
        var phasesD = new List<Phases>();
        await ApiPhasesAsync(flotillaApi, ct); // warm the HttpClient path
        await ApiPhasesAsync(dockerdApi, ct);
        for (var i = 0; i < 5; i++)
        {
            phasesF.Add(await ApiPhasesAsync(flotillaApi, ct));
            phasesD.Add(await ApiPhasesAsync(dockerdApi, ct));
        }
        var refs = new Dictionary<string, List<double>> { ["flotilla"] = [], ["dockerd"] = [], ["podman"] = [], ["runc"] = [] };
        var bundle = PrepareRuncBundle();
        await RuncOnce(bundle, ct);
        for (var i = 0; i < 5; i++)
        {
            refs["flotilla"].Add((await Timed(() => Flotilla(ct, "version", "--format", "{{.Server.Version}}"))).Seconds);
            refs["dockerd"].Add((await Timed(() => Dockerd(ct, "version", "--format", "{{.Server.Version}}"))).Seconds);
            refs["podman"].Add((await Timed(() => Podman(ct, "images", "-q"))).Seconds);
            refs["runc"].Add(await RuncOnce(bundle, ct));
        }

        Report(samples, phasesF, phasesD, refs, runtime);
    }

    // ---------------------------------------------------------------------------------------------------------------

    private enum Engine { Flotilla, Dockerd, Podman }

    private Task<ProcResult> Cli(Engine e, CancellationToken ct, params string[] args) => e switch
    {
        Engine.Flotilla => Flotilla(ct, args),
        Engine.Dockerd => Dockerd(ct, args),
        _ => Podman(ct, args),
    };

    /// <summary>One timed run (CLI process start to exit): attached, or in fallback mode run -d --rm then wait.</summary>
    private async Task<double> RunOnce(Engine e, CancellationToken ct)
    {
        string[] podmanArgs = e == Engine.Podman ? PodmanRunArgs : [];
        if (!_fallback)
        {
            var (r, s) = await Timed(() => Cli(e, ct, ["run", .. podmanArgs, "--rm", "--network", "none", Image, "/bin/true"]), TimeSpan.FromSeconds(120));
            await Check(r, $"{e} run");
            return s;
        }
        var start = Stopwatch.GetTimestamp();
        var run = await Check(await Cli(e, ct, ["run", .. podmanArgs, "-d", "--rm", "--network", "none", Image, "/bin/true"]), $"{e} run -d");
        var wait = await Cli(e, ct, "wait", run.Stdout.Trim());
        var seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        // --rm may remove the container before `wait` looks it up: that is an exit too.
        if (wait.ExitCode != 0 && !wait.Stderr.Contains("no such container", StringComparison.OrdinalIgnoreCase))
            throw new InvalidOperationException($"{e} wait failed (exit {wait.ExitCode}): {wait.Stderr}");
        return seconds;
    }

    /// <summary>
    /// podman's own defaults do not start a container in this sandbox: as root it sets RLIMIT_NOFILE/NPROC to 1048576 /
    /// the hard limit, which needs CAP_SYS_RESOURCE (not granted here: "setrlimit RLIMIT_NOFILE: Operation not permitted"),
    /// and crun 1.8.1 refuses this cgroup v1 hybrid host ("cgroups in hybrid mode not supported"). So podman runs with runc
    /// (the runtime dockerd and Flotilla use), nofile = this process's hard limit (what the other engines' containers
    /// inherit) and nproc 4096 (equal to the hard limit is refused too).
    /// </summary>
    private static readonly string[] PodmanRunArgs = ["--runtime", "runc", "--ulimit", $"nofile={HardNofile()}:{HardNofile()}", "--ulimit", "nproc=4096:4096"];

    private static string HardNofile() =>
        File.ReadLines("/proc/self/limits").First(l => l.StartsWith("Max open files", StringComparison.Ordinal))
            .Split(' ', StringSplitOptions.RemoveEmptyEntries)[4];

    private async Task CheckNoLeftoversAsync(CancellationToken ct)
    {
        foreach (var e in new[] { Engine.Flotilla, Engine.Dockerd, Engine.Podman })
        {
            // --rm is asynchronous on some engines in fallback mode; give it a moment.
            for (var i = 0; ; i++)
            {
                var ps = (await Check(await Cli(e, ct, "ps", "-aq"), $"{e} ps")).Stdout.Trim();
                if (ps.Length == 0) break;
                if (i == 20) { Console.WriteLine($"[check] {e}: containers left after --rm: {ps.Replace('\n', ' ')}"); break; }
                await Task.Delay(250, ct);
            }
        }
    }

    // ---------------------------------------------------------------------------------------------------------------

    private sealed record Phases(double Create, double Start, double Wait, double Delete, double AutoRemoveRun, double AutoRemoveCreate,
        double AutoRemoveStartCall, double AutoRemoveStartToRemoved)
    {
        public double Sum => Create + Start + Wait + Delete;
    }

    /// <summary>
    /// Two runs over the Engine API: (a) without AutoRemove: create, start, wait (until exit), delete, each timed; (b) as
    /// `docker run --rm` does it minus attach: create with AutoRemove, wait?condition=removed (headers first), start, wait body.
    /// </summary>
    private static async Task<Phases> ApiPhasesAsync(HttpClient api, CancellationToken ct)
    {
        object Body(bool autoRemove) => new { Image, Cmd = new[] { "/bin/true" }, HostConfig = new { NetworkMode = "none", AutoRemove = autoRemove } };

        var t = Stopwatch.GetTimestamp();
        var id = await CreateAsync(api, Body(false), ct);
        var create = Lap(ref t);
        await ExpectAsync(await api.PostAsync($"/v1.41/containers/{id}/start", null, ct), "start");
        var start = Lap(ref t);
        await ExpectAsync(await api.PostAsync($"/v1.41/containers/{id}/wait", null, ct), "wait");
        var wait = Lap(ref t);
        await ExpectAsync(await api.DeleteAsync($"/v1.41/containers/{id}", ct), "delete");
        var delete = Lap(ref t);

        var t0 = t = Stopwatch.GetTimestamp();
        id = await CreateAsync(api, Body(true), ct);
        var arCreate = Lap(ref t);
        using var waitRequest = new HttpRequestMessage(HttpMethod.Post, $"/v1.41/containers/{id}/wait?condition=removed");
        var waitResponse = await api.SendAsync(waitRequest, HttpCompletionOption.ResponseHeadersRead, ct);
        await ExpectAsync(await api.PostAsync($"/v1.41/containers/{id}/start", null, ct), "start (AutoRemove)");
        var arStart = Lap(ref t);
        await ExpectAsync(waitResponse, "wait?condition=removed");
        var arRemoved = Lap(ref t);
        return new Phases(create, start, wait, delete, Stopwatch.GetElapsedTime(t0).TotalSeconds, arCreate, arStart, arRemoved);
    }

    private static double Lap(ref long t)
    {
        var now = Stopwatch.GetTimestamp();
        var s = Stopwatch.GetElapsedTime(t, now).TotalSeconds;
        t = now;
        return s;
    }

    private static async Task<string> CreateAsync(HttpClient api, object body, CancellationToken ct)
    {
        // A Content-Length body, as the docker CLI sends it (JsonContent would go chunked).
        using var content = new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json");
        var response = await api.PostAsync("/v1.41/containers/create", content, ct);
        var text = await response.Content.ReadAsStringAsync(ct);
        if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"create: {(int)response.StatusCode} {text}");
        return JsonDocument.Parse(text).RootElement.GetProperty("Id").GetString()!;
    }

    private static async Task ExpectAsync(HttpResponseMessage response, string what)
    {
        var text = await response.Content.ReadAsStringAsync(); // the whole body: for wait, the exit
        if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"{what}: {(int)response.StatusCode} {text}");
        if (what.StartsWith("wait", StringComparison.Ordinal) && !text.Contains("\"StatusCode\":0", StringComparison.Ordinal))
            throw new InvalidOperationException($"{what}: unexpected body {text}");
        response.Dispose();
    }

    private static class ApiClient
    {
        public static HttpClient Tcp(int port) => new() { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromMinutes(2) };

        public static HttpClient Unix(string socket) => new(new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await s.ConnectAsync(new UnixDomainSocketEndPoint(socket), ct);
                return new NetworkStream(s, ownsSocket: true);
            },
        })
        { BaseAddress = new Uri("http://localhost"), Timeout = TimeSpan.FromMinutes(2) };
    }

    // ---------------------------------------------------------------------------------------------------------------

    /// <summary>runc alone: an OCI bundle on a copy of the same rootfs, /bin/true, new network namespace (like --network none).</summary>
    private string PrepareRuncBundle()
    {
        var bundle = Path.Combine(root, "runc-bundle");
        var rootfs = Path.Combine(bundle, "rootfs");
        Directory.CreateDirectory(Path.Combine(rootfs, "bin"));
        foreach (var d in new[] { "proc", "dev", "sys", "tmp" }) Directory.CreateDirectory(Path.Combine(rootfs, d));
        File.Copy("/bin/busybox", Path.Combine(rootfs, "bin", "busybox"));
        File.CreateSymbolicLink(Path.Combine(rootfs, "bin", "true"), "busybox");
        var spec = Proc.RunAsync("runc", ["spec", "--bundle", bundle], null, CancellationToken.None).GetAwaiter().GetResult();
        if (spec.ExitCode != 0) throw new InvalidOperationException($"runc spec: {spec.Stderr}");
        var path = Path.Combine(bundle, "config.json");
        var json = File.ReadAllText(path)
            .Replace("\"terminal\": true", "\"terminal\": false", StringComparison.Ordinal)
            .Replace("\"sh\"", "\"/bin/true\"", StringComparison.Ordinal);
        File.WriteAllText(path, json);
        return bundle;
    }

    private int _runcId;

    private async Task<double> RuncOnce(string bundle, CancellationToken ct)
    {
        var (r, s) = await Timed(() => Proc.RunAsync("runc", ["--root", Path.Combine(root, "runc-state"), "run", "--bundle", bundle, $"bench-{++_runcId}"], null, ct));
        await Check(r, "runc run");
        return s;
    }

    // ---------------------------------------------------------------------------------------------------------------

    private async Task StartDockerdAsync(CancellationToken ct)
    {
        var unpacked = Path.Combine(_dockerd, "pkg");
        Directory.CreateDirectory(unpacked);
        var debs = debsDir ?? Path.Combine(_dockerd, "debs");
        if (debsDir is null)
        {
            Directory.CreateDirectory(debs);
            var dl = await Proc.RunAsync("apt-get", ["download", "docker.io", "containerd"], null, ct, debs);
            if (dl.ExitCode != 0) throw new InvalidOperationException($"apt-get download docker.io containerd: {dl.Stderr}");
        }
        var files = Directory.GetFiles(debs, "*.deb").Where(f => Path.GetFileName(f).StartsWith("docker.io_", StringComparison.Ordinal)
            || Path.GetFileName(f).StartsWith("containerd_", StringComparison.Ordinal)).ToList();
        if (files.Count != 2) throw new InvalidOperationException($"expected docker.io_*.deb and containerd_*.deb in {debs}, found: {string.Join(", ", files)}");
        foreach (var deb in files) await Check(await Proc.RunAsync("dpkg", ["-x", deb, unpacked], null, ct), $"dpkg -x {deb}");

        File.WriteAllText(Path.Combine(_dockerd, "daemon.json"), "{}"); // not /etc/docker/daemon.json
        var log = Path.Combine(_dockerd, "dockerd.log");
        var psi = new ProcessStartInfo(Path.Combine(unpacked, "usr/sbin/dockerd"))
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in new[]
                 {
                     "--bridge=none", "--iptables=false", "--ip6tables=false", "--storage-driver", "overlay2",
                     "--data-root", Path.Combine(_dockerd, "data"), "--exec-root", Path.Combine(_dockerd, "exec"),
                     "--pidfile", Path.Combine(_dockerd, "dockerd.pid"), "--config-file", Path.Combine(_dockerd, "daemon.json"),
                     "-H", "unix://" + DockerdSocket,
                 })
            psi.ArgumentList.Add(a);
        // Its managed containerd (and shims) come from the unpacked package: first on PATH for this process only.
        psi.Environment["PATH"] = $"{unpacked}/usr/bin:{unpacked}/usr/sbin:{Environment.GetEnvironmentVariable("PATH")}";
        Console.WriteLine("[dockerd] starting the unpacked dockerd (managed containerd) ...");
        _dockerdProcess = Process.Start(psi) ?? throw new InvalidOperationException("could not start dockerd");
        var writer = new StreamWriter(log) { AutoFlush = true };
        var gate = new Lock();
        void Append(string? line) { if (line is not null) lock (gate) writer.WriteLine(line); }
        _dockerdProcess.OutputDataReceived += (_, e) => Append(e.Data);
        _dockerdProcess.ErrorDataReceived += (_, e) => Append(e.Data);
        _dockerdProcess.BeginOutputReadLine();
        _dockerdProcess.BeginErrorReadLine();

        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (_dockerdProcess.HasExited)
                throw new InvalidOperationException($"dockerd exited ({_dockerdProcess.ExitCode}): {string.Join('\n', File.ReadLines(log).TakeLast(15))}");
            if (File.Exists(DockerdSocket))
            {
                var v = await Dockerd(ct, "version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}}), containerd {{range .Server.Components}}{{if eq .Name \"containerd\"}}{{.Version}}{{end}}{{end}}");
                if (v.ExitCode == 0)
                {
                    var driver = (await Dockerd(ct, "info", "--format", "{{.Driver}}, cgroup driver {{.CgroupDriver}}")).Stdout.Trim();
                    Console.WriteLine($"[dockerd] up in {deadline.Elapsed.TotalSeconds:F1} s: server {v.Stdout.Trim()}, storage {driver}, socket {DockerdSocket}");
                    return;
                }
            }
            if (deadline.Elapsed > TimeSpan.FromSeconds(60))
                throw new InvalidOperationException($"dockerd not up after 60 s: {string.Join('\n', File.ReadLines(log).TakeLast(15))}");
            await Task.Delay(200, ct);
        }
    }

    private async Task StopDockerdAsync()
    {
        if (_dockerdProcess is null) return;
        try
        {
            if (!_dockerdProcess.HasExited)
            {
                kill(_dockerdProcess.Id, 15); // SIGTERM: dockerd stops its containers and its managed containerd
                if (!_dockerdProcess.WaitForExit(TimeSpan.FromSeconds(30)))
                {
                    Console.Error.WriteLine("dockerd did not stop within 30 s: killing it");
                    _dockerdProcess.Kill(entireProcessTree: true);
                    _dockerdProcess.WaitForExit(TimeSpan.FromSeconds(10));
                }
            }
        }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            Console.Error.WriteLine($"dockerd stop: {e.Message}");
        }
        _dockerdProcess.Dispose();
    }

    /// <summary>Whatever this run started that still runs (containerd, shims, conmon: their command lines name the temp root).</summary>
    private void KillStragglers() => KillStragglers(root);

    /// <summary>Kills every process (but this one) whose command line names <paramref name="root"/>.</summary>
    internal static void KillStragglers(string root)
    {
        var self = Environment.ProcessId;
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid) || pid == self) continue;
            string cmdline;
            try { cmdline = File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' '); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { continue; }
            if (!cmdline.Contains(root + "/", StringComparison.Ordinal)) continue;
            Console.Error.WriteLine($"killing leftover process {pid}: {cmdline.Trim()}");
            kill(pid, 9);
        }
    }

    [DllImport("libc", SetLastError = true)]
#pragma warning disable SYSLIB1054
    private static extern int kill(int pid, int sig);
#pragma warning restore SYSLIB1054

    // ---------------------------------------------------------------------------------------------------------------

    private Task<ProcResult> Flotilla(CancellationToken ct, params string[] args) => _flotilla!.DockerAsync(ct, args);

    private Task<ProcResult> Dockerd(CancellationToken ct, params string[] args) =>
        Proc.RunAsync("docker", ["-H", "unix://" + DockerdSocket, .. args],
            new Dictionary<string, string> { ["DOCKER_CONFIG"] = Path.Combine(root, "docker-config") }, ct);

    private BenchPodman? _podman;

    private Task<ProcResult> Podman(CancellationToken ct, params string[] args) => _podman!.RunAsync(ct, args);

    private Task<string> PickPodmanDriverAsync(CancellationToken ct) => (_podman = new BenchPodman(_podmanRoot)).PickDriverAsync(ct);

    private static Task<ProcResult> Check(ProcResult? r, string what) =>
        r is { ExitCode: 0 } ? Task.FromResult(r)
            : throw new InvalidOperationException($"{what} failed ({(r is null ? "timed out" : $"exit {r.ExitCode}")}): {r?.Stdout}{r?.Stderr}");

    private static async Task<(ProcResult? Result, double Seconds)> Timed(Func<Task<ProcResult>> action, TimeSpan? timeout = null)
    {
        var start = Stopwatch.GetTimestamp();
        try
        {
            var result = timeout is { } t ? await action().WaitAsync(t) : await action();
            return (result, Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        catch (TimeoutException)
        {
            return (null, Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
    }

    /// <summary>rootfs: bin/busybox, bin/true and bin/sh (and <paramref name="more"/>) links to it.</summary>
    internal static void WriteRootfs(string path, params string[] more)
    {
        var mtime = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        using var file = File.Create(path);
        using var tar = new TarWriter(file, TarEntryFormat.Pax, leaveOpen: false);
        tar.WriteEntry(new PaxTarEntry(TarEntryType.Directory, "bin/") { Mode = (UnixFileMode)0b111_101_101, ModificationTime = mtime });
        tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "bin/busybox")
        { Mode = (UnixFileMode)0b111_101_101, ModificationTime = mtime, DataStream = new MemoryStream(File.ReadAllBytes("/bin/busybox")) });
        foreach (var link in new[] { "true", "sh" }.Concat(more))
            tar.WriteEntry(new PaxTarEntry(TarEntryType.SymbolicLink, $"bin/{link}") { LinkName = "busybox", ModificationTime = mtime });
    }

    // ---------------------------------------------------------------------------------------------------------------

    private void Report(Dictionary<Engine, List<double>> s, List<Phases> pf, List<Phases> pd, Dictionary<string, List<double>> refs, string podmanRuntime)
    {
        var mode = _fallback ? "run -d --rm + wait (FALLBACK: attached run through Flotilla failed)" : "run --rm (attached)";
        var mf = Median(s[Engine.Flotilla]);
        var md = Median(s[Engine.Dockerd]);
        var mp = Median(s[Engine.Podman]);
        Console.WriteLine();
        Console.WriteLine($"load average at end: {LoadAverage()} (other work on this machine skews every row)");
        Console.WriteLine();
        Console.WriteLine($"measurement: {mode} --network none, /bin/true     median s   p90 s   samples (s)");
        Console.WriteLine("--------------------------------------------------------------------------------------------------------------");
        void Row(string label, List<double> xs) => Console.WriteLine($"{label,-50} {Median(xs),9:F3} {P90(xs),7:F3}   {Samples(xs)}");
        Row("flotilla: docker CLI -> Flotilla (tcp)", s[Engine.Flotilla]);
        Row("dockerd 20.10: docker CLI -> dockerd (unix)", s[Engine.Dockerd]);
        Row($"podman: podman run ({_podmanDriver}, runc, --ulimit)", s[Engine.Podman]);
        Console.WriteLine();
        Console.WriteLine("API calls timed one by one over HTTP (median of 5, seconds; no CLI, no attach):");
        Console.WriteLine("  engine     create    start  wait(exit)  delete     sum  |  AutoRemove run: create  start  start->removed   total");
        void PRow(string label, List<Phases> p)
        {
            double M(Func<Phases, double> f) => Median(p.Select(f).ToList());
            Console.WriteLine($"  {label,-8} {M(x => x.Create),8:F3} {M(x => x.Start),8:F3} {M(x => x.Wait),11:F3} {M(x => x.Delete),7:F3} {M(x => x.Sum),7:F3}  |  " +
                $"{"",14} {M(x => x.AutoRemoveCreate),6:F3} {M(x => x.AutoRemoveStartCall),6:F3} {M(x => x.AutoRemoveStartToRemoved),15:F3} {M(x => x.AutoRemoveRun),7:F3}");
        }
        PRow("flotilla", pf);
        PRow("dockerd", pd);
        Console.WriteLine($"  fixed costs: `docker version` round trip flotilla {Median(refs["flotilla"]):F3} s, dockerd {Median(refs["dockerd"]):F3} s; " +
            $"`podman images -q` {Median(refs["podman"]):F3} s; runc alone (`runc run` of /bin/true, same rootfs, new netns) {Median(refs["runc"]):F3} s");
        var apiF = Median(pf.Select(x => x.AutoRemoveRun).ToList());
        var apiD = Median(pd.Select(x => x.AutoRemoveRun).ToList());
        Console.WriteLine($"  CLI run median - API AutoRemove run median: flotilla {mf - apiF:F3} s, dockerd {md - apiD:F3} s (CLI start, ping, attach, output)");
        Console.WriteLine();
        var rd = mf / md;
        var rp = mf / mp;
        Console.WriteLine($"ratio flotilla / dockerd (median, lower is better, goal <= 0.4): {rd:F2}");
        Console.WriteLine($"ratio flotilla / podman  (median, lower is better):              {rp:F2}");
        Console.WriteLine($"ratio podman / dockerd:                                          {mp / md:F2}");
        Console.WriteLine();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"SUMMARY run mode={(_fallback ? "detached+wait(FALLBACK)" : "attached")} n={s[Engine.Flotilla].Count} flotilla={mf:F3}s dockerd={md:F3}s podman={mp:F3}s " +
            $"flotilla/dockerd={rd:F2} flotilla/podman={rp:F2} runc={Median(refs["runc"]):F3}s goal={(rd <= 0.4 ? "met" : "missed")}"));
    }

    public async ValueTask DisposeAsync()
    {
        await StopDockerdAsync();
        if (_flotilla is not null) await _flotilla.DisposeAsync();
        KillStragglers();
    }
}
