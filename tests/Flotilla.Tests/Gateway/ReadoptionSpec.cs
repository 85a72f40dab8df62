using System.Text.Json;
using Akka.Actor;
using Flotilla.Cli.Hosting;
using Flotilla.NodeRuntime.Host;
using Flotilla.Tests.Infrastructure;
using Flotilla.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Flotilla.Tests.Gateway;

/// <summary>
/// Containers outlive the flotilla process: after a restart on the same data dir and database, what
/// still runs is re-adopted (same pid, logs go on, stop works) and what exited meanwhile is recorded.
/// </summary>
[Collection("postgres")]
public class ReadoptionSpec(PostgresFixture postgres)
{
    private readonly int _port = FreePort.Next();
    private readonly int _http = FreePort.Next();
    private readonly string _data = Path.Combine(Path.GetTempPath(), "flotilla-readopt-" + Guid.NewGuid().ToString("N")[..8]);

    private async Task<WebApplication> StartAsync(string connectionString)
    {
        var facts = await HostFacts.ProbeAsync(null);
        var app = AllInOneHost.Build(new UpSettings($"127.0.0.1:{_port}", "127.0.0.1:0", $"127.0.0.1:{_http}", _data, connectionString,
            "readopt-node", null), connectionString, facts);
        await app.StartAsync();
        await AllInOneHost.WhenMemberUp(app.Services.GetRequiredService<ActorSystem>()).WaitAsync(TimeSpan.FromSeconds(30));
        return app;
    }

    private Task<ProcessResult> Docker(params string[] args) =>
        ProcessRunner.RunAsync("docker", ["-H", $"tcp://127.0.0.1:{_port}", .. args], TimeSpan.FromSeconds(60));

    private async Task<JsonElement> State(string name) =>
        JsonDocument.Parse((await Docker("inspect", name)).Stdout).RootElement[0].GetProperty("State");

    [Fact]
    public async Task A_running_container_keeps_running_and_logging_across_a_restart_of_flotilla()
    {
        var connectionString = await postgres.NewDatabaseAsync("readopt");
        Directory.CreateDirectory(_data);
        var rootfs = Path.Combine(_data, "rootfs.tar");
        await File.WriteAllBytesAsync(rootfs, BusyboxImage.Rootfs());

        var app = await StartAsync(connectionString);
        try
        {
            Assert.Equal(0, (await Docker("import", rootfs, "box:1")).ExitCode);
            Assert.Equal(0, (await Docker("run", "-d", "--name", "ticker", "box:1", "sh", "-c", "while true; do echo tick; sleep 0.2; done")).ExitCode);
            Assert.Equal(0, (await Docker("run", "-d", "--name", "shortlived", "box:1", "sh", "-c", "sleep 2; exit 7")).ExitCode);
            var pid = (await State("ticker")).GetProperty("Pid").GetInt32();

            await app.StopAsync();
            await app.DisposeAsync();
            var linesWhileDown = File.Exists($"/proc/{pid}/status");
            Assert.True(linesWhileDown, "the container survives the engine");
            await Task.Delay(3000); // shortlived exits while nobody watches

            app = await StartAsync(connectionString);
            Assert.Contains("box", (await Docker("images", "--format", "{{.Repository}}:{{.Tag}}")).Stdout);
            var after = await State("ticker");
            Assert.Equal("running", after.GetProperty("Status").GetString());
            Assert.Equal(pid, after.GetProperty("Pid").GetInt32());

            Assert.True(await Eventually.TrueAsync(async () =>
                (await State("shortlived")).GetProperty("Status").GetString() == "exited", TimeSpan.FromSeconds(15)), "exit recorded after restart");
            Assert.Equal(7, (await State("shortlived")).GetProperty("ExitCode").GetInt32());

            var before = (await Docker("logs", "ticker")).Stdout.Split('\n').Length;
            await Task.Delay(1000);
            Assert.True((await Docker("logs", "ticker")).Stdout.Split('\n').Length > before, "still logging");

            Assert.Equal(0, (await Docker("stop", "-t", "1", "ticker")).ExitCode);
            Assert.Equal("exited", (await State("ticker")).GetProperty("Status").GetString());
            await Docker("rm", "-f", "ticker", "shortlived");
        }
        finally
        {
            await DataRootCleanup.RemoveContainersAsync(_port);
            await app.StopAsync();
            await app.DisposeAsync();
            await DataRootCleanup.DeleteAsync(_data);
        }
    }

    [Fact]
    public async Task A_restart_policy_applies_to_an_exit_that_happened_while_flotilla_was_down()
    {
        var connectionString = await postgres.NewDatabaseAsync("readopt_policy");
        Directory.CreateDirectory(_data);
        var rootfs = Path.Combine(_data, "rootfs.tar");
        await File.WriteAllBytesAsync(rootfs, BusyboxImage.Rootfs());

        var app = await StartAsync(connectionString);
        try
        {
            Assert.Equal(0, (await Docker("import", rootfs, "box:1")).ExitCode);
            Assert.Equal(0, (await Docker("run", "-d", "--name", "always", "--restart", "always", "box:1", "sleep", "300")).ExitCode);
            Assert.Equal(0, (await Docker("run", "-d", "--name", "never", "box:1", "sleep", "300")).ExitCode);
            var alwaysPid = (await State("always")).GetProperty("Pid").GetInt32();
            var neverPid = (await State("never")).GetProperty("Pid").GetInt32();

            await app.StopAsync();
            await app.DisposeAsync();
            System.Diagnostics.Process.GetProcessById(alwaysPid).Kill();
            System.Diagnostics.Process.GetProcessById(neverPid).Kill();
            await Task.Delay(1500);

            app = await StartAsync(connectionString);
            Assert.True(await Eventually.TrueAsync(async () =>
            {
                var s = await State("always");
                return s.GetProperty("Status").GetString() == "running" && s.GetProperty("Pid").GetInt32() != alwaysPid;
            }, TimeSpan.FromSeconds(20)), "restarted by its policy");
            Assert.True(await Eventually.TrueAsync(async () =>
                (await State("never")).GetProperty("Status").GetString() == "exited", TimeSpan.FromSeconds(20)), "no policy: stays exited");
            Assert.Equal(137, (await State("never")).GetProperty("ExitCode").GetInt32());
            await Docker("rm", "-f", "always", "never");
        }
        finally
        {
            await DataRootCleanup.RemoveContainersAsync(_port);
            await app.StopAsync();
            await app.DisposeAsync();
            await DataRootCleanup.DeleteAsync(_data);
        }
    }
}
