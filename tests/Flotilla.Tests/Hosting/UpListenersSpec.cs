using System.Diagnostics;
using System.Text;
using Flotilla.Tests.Support;
using Xunit;

namespace Flotilla.Tests.Hosting;

/// <summary>
/// The real <c>flotilla up</c> process: by default no TCP Docker API at all (a local user reaches nothing), the
/// socket serves the docker CLI; TCP on request comes with dockerd's warning; bad listener flags are refused.
/// </summary>
public class UpListenersSpec
{
    private static readonly string FlotillaDll = Path.Combine(AppContext.BaseDirectory, "flotilla.dll");

    [Fact]
    public async Task Up_listens_on_the_socket_only_and_the_docker_cli_works_through_it()
    {
        var data = Path.Combine(Path.GetTempPath(), "flotilla-up-" + Guid.NewGuid().ToString("N")[..8]);
        var socket = Path.Combine(data, "docker.sock");
        int registry = FreePort.Next(), http = FreePort.Next();
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { FlotillaDll, "up", "--data", data, "--docker-socket", socket, "--registry", $"127.0.0.1:{registry}",
                     "--http", $"127.0.0.1:{http}", "--name", "up-listeners" })
            psi.ArgumentList.Add(a);
        using var up = Process.Start(psi)!;
        var output = new StringBuilder();
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        up.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (output) output.AppendLine(e.Data);
            if (e.Data.StartsWith("The docker CLI", StringComparison.Ordinal) || e.Data.StartsWith("export DOCKER_HOST", StringComparison.Ordinal))
                ready.TrySetResult();
        };
        up.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null) lock (output) output.AppendLine(e.Data);
        };
        up.BeginOutputReadLine();
        up.BeginErrorReadLine();
        try
        {
            await ready.Task.WaitAsync(TimeSpan.FromMinutes(2));
            string banner;
            lock (output) banner = output.ToString();
            Assert.Contains($"Docker API  unix://{socket}", banner);
            Assert.DoesNotContain("Docker API  tcp://", banner);
            Assert.DoesNotContain("DOCKER_HOST=tcp://", banner);
            Assert.DoesNotContain("Binding to IP address", banner);

            // Every TCP port the process listens on: the registry, the native API and the cluster transport; no Docker API.
            var akka = System.Text.RegularExpressions.Regex.Match(banner, @"akka(?:\.ssl)?\.tcp://flotilla@127\.0\.0\.1:(\d+)");
            Assert.True(akka.Success, banner);
            var akkaPort = int.Parse(akka.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            var ss = await ProcessRunner.RunAsync("ss", ["-Hltnp"]);
            var ports = ss.Stdout.Split('\n').Where(l => l.Contains($"pid={up.Id},"))
                .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[3])
                .Select(local => int.Parse(local[(local.LastIndexOf(':') + 1)..], System.Globalization.CultureInfo.InvariantCulture))
                .Order().ToList();
            Assert.Equal(new[] { registry, http, akkaPort }.Order().ToList(), ports);

            var version = await ProcessRunner.RunAsync("docker", ["version", "--format", "{{.Server.Platform.Name}}"], TimeSpan.FromSeconds(60),
                new Dictionary<string, string> { ["DOCKER_HOST"] = $"unix://{socket}", ["DOCKER_CONFIG"] = Path.Combine(data, "docker-config") });
            Assert.True(version.ExitCode == 0, version.ToString());
        }
        finally
        {
            if (!up.HasExited)
            {
                Process.Start("kill", ["-TERM", up.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!.WaitForExit();
                if (!up.WaitForExit(60_000)) up.Kill(entireProcessTree: true);
            }
            await DataRootCleanup.DeleteAsync(data);
        }
    }

    [Theory]
    [InlineData(new[] { "--tlsverify", "--tlscert", "/nonexistent/c.pem", "--tlskey", "/nonexistent/k.pem" }, "--tlsverify needs --tlscacert")]
    [InlineData(new[] { "--tlscacert", "/nonexistent/ca.pem" }, "--tlscacert is used only with --tlsverify")]
    [InlineData(new[] { "--tls" }, "TLS needs both --tlscert and --tlskey")]
    [InlineData(new[] { "-H", "unix:///tmp/x.sock" }, "the unix socket is --docker-socket")]
    [InlineData(new[] { "--postgres", "Host=x", "--postgres-file", "/nonexistent/pg" }, "give --postgres or --postgres-file, not both")]
    public async Task Listener_flags_that_cannot_be_served_are_refused_before_anything_starts(string[] flags, string message)
    {
        var result = await ProcessRunner.RunAsync("dotnet", [FlotillaDll, "up", "--data", "/nonexistent/flotilla-listeners", .. flags], TimeSpan.FromSeconds(30));
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains(message, result.Stderr);
        Assert.False(Directory.Exists("/nonexistent/flotilla-listeners"), "nothing started");
    }

    [Fact]
    public async Task The_postgres_connection_string_can_come_from_a_file()
    {
        var file = Path.Combine(Path.GetTempPath(), "flotilla-pg-" + Guid.NewGuid().ToString("N")[..8]);
        await File.WriteAllTextAsync(file, "Host=127.0.0.1;Port=1;Username=nobody;Password=from-the-file;Timeout=1\n");
        try
        {
            // Nothing listens on port 1: the process got as far as using the file's connection string.
            // A founding node (it makes its own cluster CA, so no certificate is needed before the database is used).
            var result = await ProcessRunner.RunAsync("dotnet", [FlotillaDll, "node", "--postgres-file", file,
                "--data", Path.Combine(Path.GetTempPath(), "flotilla-pgfile"), "--api", $"127.0.0.1:{FreePort.Next()}", "--enroll", "none",
                "--bind", $"127.0.0.1:{FreePort.Next()}"], TimeSpan.FromSeconds(90));
            Assert.NotEqual(0, result.ExitCode);
            Assert.DoesNotContain("--postgres or --postgres-file is required", result.Stderr);
            Assert.Contains("127.0.0.1:1", result.Stderr + result.Stdout);
        }
        finally
        {
            File.Delete(file);
            if (Directory.Exists(Path.Combine(Path.GetTempPath(), "flotilla-pgfile"))) Directory.Delete(Path.Combine(Path.GetTempPath(), "flotilla-pgfile"), true);
        }
    }
}
