using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using Flotilla.NodeRuntime.Oci;
using Xunit;
using Xunit.Abstractions;

namespace Flotilla.Tests.Oci;

[CollectionDefinition("oci-containers", DisableParallelization = true)]
public sealed class OciContainersCollection;

/// <summary>Real containers: busybox rootfs, runc, conmon. Runs as root.</summary>
[Collection("oci-containers")]
public sealed class ConmonMonitorSpec : IAsyncLifetime
{
    private readonly ITestOutputHelper _output;
    private readonly BusyboxRootfs _fs = new();
    private readonly List<string> _ids = [];
    private ConmonMonitor _monitor = null!;

    public ConmonMonitorSpec(ITestOutputHelper output) => _output = output;

    public Task InitializeAsync()
    {
        _monitor = NewMonitor();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        foreach (var id in _ids)
        {
            await _monitor.RemoveAsync(id);
            Assert.False(Directory.Exists(_monitor.PathsFor(id).Root));
            Assert.Null(await _monitor.Runtime.StateAsync(id));
            Assert.False(Directory.Exists($"/sys/fs/cgroup/memory/flotilla/{id}"));
        }
        _fs.Dispose();
    }

    private ConmonMonitor NewMonitor() =>
        new(new ConmonOptions { DataRoot = _fs.DataRoot }, new RuncDriver("/usr/sbin/runc", Path.Combine(_fs.DataRoot, "runc")));

    private ContainerSpec Spec(params string[] args)
    {
        var id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        _ids.Add(id);
        return new ContainerSpec { Id = id, RootfsPath = _fs.Rootfs, Args = args };
    }

    private async Task<(ContainerExit Exit, string Log)> RunToExit(ContainerSpec spec)
    {
        await _monitor.RunAsync(spec);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var exit = await _monitor.WaitForExitAsync(spec.Id, cts.Token);
        var log = await ReadLog(spec.Id);
        _output.WriteLine($"exit {exit.ExitCode}, log:\n{log}");
        return (exit, log);
    }

    private async Task<string> ReadLog(string id)
    {
        var sb = new StringBuilder();
        await foreach (var e in ContainerLogReader.ReadAsync(_monitor.PathsFor(id).Log, new LogReadOptions()))
            sb.Append(Encoding.UTF8.GetString(e.Bytes));
        return sb.ToString();
    }

    [Fact]
    public async Task Echo_hello_lands_in_the_log()
    {
        var (exit, log) = await RunToExit(Spec("echo", "hello"));
        Assert.Equal(0, exit.ExitCode);
        Assert.False(exit.OomKilled);
        Assert.Equal("hello\n", log);
    }
}
