using System.Formats.Tar;
using System.Net;
using System.Text;
using Flotilla.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Flotilla.Tests.Gateway;

/// <summary>
/// Intruder test for <c>docker cp</c> (issue 13, item 7): a running container keeps swapping a directory and a
/// symlink to a host directory while the engine serves archive requests for paths under it. The engine must never
/// read the host's file nor write into the host's directory, whatever the timing.
/// </summary>
public class DockerCpRaceSpec(RunningFlotilla flotilla, ITestOutputHelper output) : IClassFixture<RunningFlotilla>
{
    private const string Image = "cprace:1";
    private const int Requests = 600;

    private async Task<string> DockerOk(params string[] args)
    {
        var result = await flotilla.RunDockerAsync(args);
        Assert.True(result.ExitCode == 0, $"docker {string.Join(' ', args)}: {result}");
        return result.Stdout;
    }

    [Fact]
    public async Task A_container_swapping_a_directory_for_a_symlink_to_the_host_never_reaches_host_files()
    {
        if ((await flotilla.RunDockerAsync("image", "inspect", Image)).ExitCode != 0)
        {
            Directory.CreateDirectory(flotilla.DataRoot);
            var path = Path.Combine(flotilla.DataRoot, "cprace-rootfs.tar");
            await File.WriteAllBytesAsync(path, BusyboxImage.Rootfs());
            await DockerOk("import", "-c", "CMD [\"/bin/sh\"]", path, Image);
        }

        var hostDir = Path.Combine(Path.GetTempPath(), "flt-cp-secret-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(hostDir);
        var secret = "HOST-SECRET-" + Guid.NewGuid().ToString("N");
        await File.WriteAllTextAsync(Path.Combine(hostDir, "secret.txt"), secret + "\n");
        try
        {
            // /a: a real directory with a file of the same name; /b: a symlink to the host directory (meaningless
            // inside the container). /d keeps turning from one into the other by rename(2).
            // /a holds 2000 files before secret.txt: reading it takes long enough for /d to change under the reader.
            var script = "busybox mkdir /a && i=0 && while [ $i -lt 2000 ]; do : > /a/a$i; i=$((i+1)); done && " +
                         $"echo inside > /a/secret.txt && busybox ln -s {hostDir} /b && touch /ready && " +
                         "while :; do busybox mv /a /d; busybox mv /d /a; busybox mv /b /d; busybox mv /d /b; done";
            var id = (await DockerOk("run", "-d", "--name", "swapper", Image, "sh", "-c", script)).Trim();
            for (var wait = 0; wait < 300 && (await flotilla.RunDockerAsync("exec", id, "test", "-e", "/ready")).ExitCode != 0; wait++)
                await Task.Delay(100);

            var leaks = 0;
            var reads = 0;
            var writes = 0;
            var statuses = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{flotilla.DockerPort}/") };
            var upload = TarWith("planted.txt", "planted\n");
            await Parallel.ForEachAsync(Enumerable.Range(0, Requests), new ParallelOptions { MaxDegreeOfParallelism = 4 }, async (i, ct) =>
            {
                if (i % 2 == 0)
                {
                    // The whole directory (a window of many entries) or the file alone (a narrow one).
                    var path = i % 4 == 0 ? "/d" : "/d/secret.txt";
                    using var response = await http.GetAsync($"v1.43/containers/{id}/archive?path={path}", HttpCompletionOption.ResponseHeadersRead, ct);
                    // A reply cut off mid-tar still counts: whatever bytes came are searched.
                    var received = new MemoryStream();
                    try
                    {
                        await (await response.Content.ReadAsStreamAsync(ct)).CopyToAsync(received, ct);
                    }
                    catch (Exception e) when (e is HttpRequestException or IOException)
                    {
                        statuses.AddOrUpdate("GET cut off", 1, (_, n) => n + 1);
                    }
                    var body = received.ToArray();
                    if (response.StatusCode == HttpStatusCode.OK) Interlocked.Increment(ref reads);
                    statuses.AddOrUpdate("GET " + (int)response.StatusCode, 1, (_, n) => n + 1);
                    if (Encoding.UTF8.GetString(body).Contains(secret, StringComparison.Ordinal)) Interlocked.Increment(ref leaks);
                }
                else
                {
                    using var content = new ByteArrayContent(upload);
                    content.Headers.ContentType = new("application/x-tar");
                    using var response = await http.PutAsync($"v1.43/containers/{id}/archive?path=/d", content, ct);
                    if (response.StatusCode == HttpStatusCode.OK) Interlocked.Increment(ref writes);
                    statuses.AddOrUpdate("PUT " + (int)response.StatusCode + (response.IsSuccessStatusCode ? "" : " " + await response.Content.ReadAsStringAsync(ct)), 1, (_, n) => n + 1);
                }
            });
            var planted = Directory.GetFileSystemEntries(hostDir).Select(Path.GetFileName).Where(n => n != "secret.txt").ToList();
            output.WriteLine($"{Requests} requests: {reads} reads and {writes} writes answered 200, {leaks} host leaks, planted on the host: {string.Join(',', planted)}");
            foreach (var (status, count) in statuses.OrderBy(s => s.Key)) output.WriteLine($"  {count} × {status}");
            Assert.Equal(0, leaks);
            Assert.Empty(planted);
            // The race was real: the engine did serve some of those requests from the container's own directory.
            Assert.True(reads > 0, "no read succeeded: the test did not exercise the copy");
        }
        finally
        {
            await flotilla.RunDockerAsync("rm", "-f", "swapper");
            Directory.Delete(hostDir, recursive: true);
        }
    }

    private static byte[] TarWith(string name, string text)
    {
        using var buffer = new MemoryStream();
        using (var tar = new TarWriter(buffer, TarEntryFormat.Pax, leaveOpen: true))
        {
            var entry = new PaxTarEntry(TarEntryType.RegularFile, name)
            {
                Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead,
                DataStream = new MemoryStream(Encoding.UTF8.GetBytes(text)),
            };
            tar.WriteEntry(entry);
        }
        return buffer.ToArray();
    }
}
