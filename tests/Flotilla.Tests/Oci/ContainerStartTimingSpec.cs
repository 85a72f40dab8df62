using System.Diagnostics;
using System.Security.Cryptography;
using Flotilla.NodeRuntime.Oci;
using Xunit;
using Xunit.Abstractions;

namespace Flotilla.Tests.Oci;

/// <summary>
/// Medians of 10 runs of /bin/true: through conmon (spawn → exit file, then + remove) and plain <c>runc run</c>.
/// runtime-notes.md measured 152–159 ms (conmon → exit file) and 99–107 ms (runc run) on this machine kind;
/// the bounds here only catch gross regressions.
/// </summary>
[Collection("oci-containers")]
public sealed class ContainerStartTimingSpec(ITestOutputHelper output) : IDisposable
{
    private readonly BusyboxRootfs _fs = new();

    public void Dispose() => _fs.Dispose();

    [Fact]
    public async Task True_through_conmon_and_through_runc_run()
    {
        var runc = new RuncDriver("/usr/sbin/runc", Path.Combine(_fs.DataRoot, "runc"));
        var monitor = new ConmonMonitor(new ConmonOptions { DataRoot = _fs.DataRoot }, runc);
        var builder = new OciBundleBuilder();
        var toExit = new List<double>();
        var withRemove = new List<double>();
        var runcRun = new List<double>();
        for (var i = 0; i < 11; i++)
        {
            var id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
            var spec = new ContainerSpec { Id = id, RootfsPath = _fs.Rootfs, Args = ["/bin/true"] };
            var sw = Stopwatch.StartNew();
            await monitor.RunAsync(spec);
            var exit = await monitor.WaitForExitAsync(id);
            var t1 = sw.Elapsed.TotalMilliseconds;
            await monitor.RemoveAsync(id);
            var t2 = sw.Elapsed.TotalMilliseconds;
            Assert.Equal(0, exit.ExitCode);

            var id2 = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
            var bundle = Path.Combine(_fs.Root, "b" + i);
            builder.Write(spec with { Id = id2 }, bundle);
            sw.Restart();
            var (code, _, stderr) = await runc.RunForegroundAsync(id2, bundle);
            var t3 = sw.Elapsed.TotalMilliseconds;
            Assert.True(code == 0, stderr);
            if (i == 0) continue; // warm-up (JIT, page cache)
            toExit.Add(t1);
            withRemove.Add(t2);
            runcRun.Add(t3);
        }
        static double Median(List<double> xs) { var s = xs.Order().ToList(); return (s[4] + s[5]) / 2; }
        output.WriteLine($"conmon create+start -> exit file: median {Median(toExit):F1} ms  [{string.Join(", ", toExit.Select(x => x.ToString("F0")))}]");
        output.WriteLine($"conmon ... + remove:              median {Median(withRemove):F1} ms");
        output.WriteLine($"runc run (foreground):            median {Median(runcRun):F1} ms  [{string.Join(", ", runcRun.Select(x => x.ToString("F0")))}]");
        Assert.True(Median(toExit) < 2000);
        Assert.True(Median(runcRun) < 2000);
    }
}
