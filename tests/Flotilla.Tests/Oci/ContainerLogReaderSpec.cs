using System.Text;
using Flotilla.NodeRuntime.Oci;
using Xunit;

namespace Flotilla.Tests.Oci;

public sealed class ContainerLogReaderSpec : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("flt-log-").FullName;
    private readonly string _log;

    public ContainerLogReaderSpec() => _log = Path.Combine(_dir, "ctr.log");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private const string Sample =
        "2024-05-01T10:00:00.000000001+00:00 stdout F first\n" +
        "2024-05-01T10:00:01.123456789+00:00 stderr P par\n" +
        "2024-05-01T10:00:01.200000000+00:00 stdout F second\n" +
        "2024-05-01T10:00:01.300000000+00:00 stderr P ti\n" +
        "2024-05-01T10:00:01.400000000+00:00 stderr F al\n" +
        "2024-05-01T10:00:02.000000000+00:00 stdout F \n" +
        "2024-05-01T10:00:03.000000000+00:00 stdout P no newline";

    private async Task<List<string>> Read(LogReadOptions options)
    {
        var list = new List<string>();
        await foreach (var e in ContainerLogReader.ReadAsync(_log, options))
            list.Add($"{(e.Stream == StdStream.Stdout ? "o" : "e")}:{Encoding.UTF8.GetString(e.Bytes)}");
        return list;
    }

    [Fact]
    public async Task Partial_records_are_joined_and_an_unterminated_tail_is_kept()
    {
        File.WriteAllText(_log, Sample + "\n");
        Assert.Equal(["o:first\n", "o:second\n", "e:partial\n", "o:\n", "o:no newline"], await Read(new LogReadOptions()));
    }

    [Fact]
    public async Task A_record_still_being_written_is_not_read()
    {
        File.WriteAllText(_log, Sample); // the last record has no newline yet
        Assert.Equal(["o:first\n", "o:second\n", "e:partial\n", "o:\n"], await Read(new LogReadOptions()));
    }

    [Fact]
    public async Task Streams_since_until_and_tail_filter()
    {
        File.WriteAllText(_log, Sample + "\n");
        Assert.Equal(["e:partial\n"], await Read(new LogReadOptions { Stdout = false }));
        Assert.Equal(["o:\n", "o:no newline"], await Read(new LogReadOptions { Since = DateTimeOffset.Parse("2024-05-01T10:00:02Z") }));
        Assert.Equal(["o:first\n", "o:second\n", "e:partial\n"], await Read(new LogReadOptions { Until = DateTimeOffset.Parse("2024-05-01T10:00:01.5Z") }));
        Assert.Equal(["o:\n", "o:no newline"], await Read(new LogReadOptions { Tail = 2 }));
        Assert.Empty(await Read(new LogReadOptions { Tail = 0 }));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(9)]
    public async Task Tail_read_backwards_gives_the_same_entries_as_reading_everything(int tail)
    {
        File.WriteAllText(_log, Sample + "\n");
        var all = await Read(new LogReadOptions());
        Assert.Equal(all.TakeLast(tail), await Read(new LogReadOptions { Tail = tail }));
        var stdout = await Read(new LogReadOptions { Stderr = false });
        Assert.Equal(stdout.TakeLast(tail), await Read(new LogReadOptions { Stderr = false, Tail = tail }));
        var stderr = await Read(new LogReadOptions { Stdout = false });
        Assert.Equal(stderr.TakeLast(tail), await Read(new LogReadOptions { Stdout = false, Tail = tail }));
    }

    /// <summary>Issue 13, item 12: <c>docker logs --tail 1</c> read the whole file into memory.</summary>
    [Fact]
    public async Task Tail_of_a_large_log_reads_only_its_end()
    {
        // 64 MiB of records, a long (partial) line across a block boundary at the end.
        await using (var w = new StreamWriter(_log, false, Encoding.ASCII, 1 << 20))
        {
            var line = "2024-05-01T10:00:00.000000001+00:00 stdout F " + new string('x', 200) + "\n";
            for (var i = 0; i < (64 << 20) / line.Length; i++) await w.WriteAsync(line);
            await w.WriteAsync("2024-05-01T10:00:01.000000000+00:00 stdout P " + new string('a', 70_000) + "\n");
            await w.WriteAsync("2024-05-01T10:00:01.000000000+00:00 stdout F last\n");
        }
        GC.Collect();
        var before = GC.GetTotalAllocatedBytes(precise: true);
        var tail = await Read(new LogReadOptions { Tail = 1 });
        var allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
        Assert.Equal(["o:" + new string('a', 70_000) + "last\n"], tail);
        Assert.True(allocated < 4 << 20, $"--tail 1 of a 64 MiB log allocated {allocated:N0} bytes");

        // Without --tail the entries stream: the first ones come before the file has been read through.
        before = GC.GetTotalAllocatedBytes(precise: true);
        await foreach (var _ in ContainerLogReader.ReadAsync(_log, new LogReadOptions())) break;
        allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
        Assert.True(allocated < 16 << 20, $"the first entry of a 64 MiB log cost {allocated:N0} bytes");
    }

    [Fact]
    public async Task Timestamps_keep_sub_microsecond_precision_to_100ns()
    {
        File.WriteAllText(_log, Sample + "\n");
        var entries = new List<LogEntry>();
        await foreach (var e in ContainerLogReader.ReadAsync(_log, new LogReadOptions())) entries.Add(e);
        Assert.Equal(new DateTimeOffset(2024, 5, 1, 10, 0, 1, TimeSpan.Zero).AddTicks(1234567), entries[2].Timestamp);
        Assert.Equal("2024-05-01T10:00:01.123456700Z", DockerLogFrame.FormatTimestamp(entries[2].Timestamp));
    }

    [Fact]
    public async Task Follow_returns_new_lines_and_ends_when_told()
    {
        File.WriteAllText(_log, "2024-05-01T10:00:00.0+00:00 stdout F one\n");
        var exited = new TaskCompletionSource();
        var seen = new List<string>();
        var reading = Task.Run(async () =>
        {
            await foreach (var e in ContainerLogReader.ReadAsync(_log, new LogReadOptions { Follow = true, Tail = 1, PollInterval = TimeSpan.FromMilliseconds(20) }, exited.Task))
                lock (seen) seen.Add(Encoding.UTF8.GetString(e.Bytes));
        });
        await Until(() => seen.Count == 1 || reading.IsCompleted);
        if (reading.IsCompleted) await reading;
        // A record arrives in two writes; the partial line ends in the next record.
        File.AppendAllText(_log, "2024-05-01T10:00:01.0+00:00 stdout P t");
        await Task.Delay(100);
        File.AppendAllText(_log, "w\n2024-05-01T10:00:01.5+00:00 stdout F o\n2024-05-01T10:00:02.0+00:00 stdout F three\n");
        await Until(() => seen.Count == 3);
        File.AppendAllText(_log, "2024-05-01T10:00:03.0+00:00 stdout P end\n");
        exited.SetResult();
        await reading.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(["one\n", "two\n", "three\n", "end"], seen);
    }

    [Fact]
    public async Task Follow_stops_on_cancellation()
    {
        File.WriteAllText(_log, "");
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in ContainerLogReader.ReadAsync(_log, new LogReadOptions { Follow = true }, null, cts.Token)) { }
        });
    }

    [Fact]
    public async Task Docker_frames_have_an_8_byte_big_endian_header()
    {
        using var ms = new MemoryStream();
        var entry = new LogEntry(StdStream.Stderr, new DateTimeOffset(2024, 1, 2, 3, 4, 5, TimeSpan.Zero), "oops\n"u8.ToArray());
        await DockerLogFrame.WriteEntryAsync(ms, entry, timestamps: false);
        Assert.Equal(new byte[] { 2, 0, 0, 0, 0, 0, 0, 5, (byte)'o', (byte)'o', (byte)'p', (byte)'s', (byte)'\n' }, ms.ToArray());

        ms.SetLength(0);
        await DockerLogFrame.WriteEntryAsync(ms, entry with { Stream = StdStream.Stdout }, timestamps: true);
        ms.Position = 0;
        var frames = new List<(StdStream, byte[])>();
        await foreach (var f in DockerLogFrame.ReadAsync(ms)) frames.Add(f);
        var (stream, payload) = Assert.Single(frames);
        Assert.Equal(StdStream.Stdout, stream);
        Assert.Equal("2024-01-02T03:04:05.000000000Z oops\n", Encoding.UTF8.GetString(payload));

        ms.SetLength(0);
        await DockerLogFrame.WriteEntryAsync(ms, entry, timestamps: false, raw: true);
        Assert.Equal("oops\n", Encoding.UTF8.GetString(ms.ToArray()));
    }

    [Theory]
    [InlineData("time=\"2024-01-01T00:00:00Z\" level=error msg=\"container does not exist\"\n", "container does not exist")]
    [InlineData("time=\"x\" level=error msg=\"exec: \\\"/x\\\": not found\"\nexec: \"/x\": not found\n", "exec: \"/x\": not found")]
    [InlineData("crun: container `abc` does not exist\n", "crun: container `abc` does not exist")]
    [InlineData("", "failed without a message")]
    public void Runtime_errors_are_reduced_to_the_message(string stderr, string message) =>
        Assert.Equal(message, RuncDriver.ErrorMessage(stderr));

    private static async Task Until(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException();
            await Task.Delay(10);
        }
    }
}
