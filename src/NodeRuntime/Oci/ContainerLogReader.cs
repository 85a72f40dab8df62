using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;

namespace Flotilla.NodeRuntime.Oci;

/// <summary>One line (or the unterminated tail) of container output, partial records joined.</summary>
public sealed record LogEntry(StdStream Stream, DateTimeOffset Timestamp, byte[] Bytes);

public sealed record LogReadOptions
{
    public bool Stdout { get; init; } = true;
    public bool Stderr { get; init; } = true;

    /// <summary>Only entries at or after this moment.</summary>
    public DateTimeOffset? Since { get; init; }

    /// <summary>Only entries at or before this moment; following stops at the first later entry.</summary>
    public DateTimeOffset? Until { get; init; }

    /// <summary>Only the last N entries that exist when reading starts (then, when following, everything new).</summary>
    public int? Tail { get; init; }

    /// <summary>Keep reading new output until cancelled or until <c>stopWhen</c> completes (the container exited).</summary>
    public bool Follow { get; init; }

    /// <summary>How often a followed file is checked for growth.</summary>
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromMilliseconds(100);
}

/// <summary>
/// Reads conmon's k8s-file log: records <c>&lt;RFC3339Nano&gt; &lt;stdout|stderr&gt; &lt;F|P&gt; &lt;bytes&gt;\n</c>, where P
/// marks a piece of a longer line (records are ≤ 8 KiB) and F its end. Full lines come back with their "\n"; an
/// unterminated last line (a process that exited mid-line) comes back without one, like Docker's json-file.
/// </summary>
public static class ContainerLogReader
{
    public static async IAsyncEnumerable<LogEntry> ReadAsync(string path, LogReadOptions options, Task? stopWhen = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var parser = new Parser(options);
        var position = 0L;
        // What exists now (waiting for the file to appear when following).
        while (!File.Exists(path))
        {
            if (!options.Follow || stopWhen is { IsCompleted: true }) yield break;
            await Delay(options, stopWhen, cancellationToken);
        }
        var stopped = !options.Follow || stopWhen is { IsCompleted: true };
        if (options.Tail is { } tail)
        {
            // Only the end of the file is read: the records of the last `tail` entries are found backwards.
            position = TailStart(path, options, Math.Max(0, tail), new FileInfo(path).Length);
            var backlog = new List<LogEntry>();
            position = ReadMore(path, position, parser, backlog, long.MaxValue);
            if (stopped) parser.Flush(backlog);
            foreach (var e in backlog.TakeLast(Math.Max(0, tail)))
            {
                if (parser.PastUntil(e)) yield break;
                yield return e;
            }
        }
        else
        {
            // Streamed a chunk at a time: a large log is never held whole.
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var batch = new List<LogEntry>();
                var next = ReadMore(path, position, parser, batch, ChunkBytes);
                foreach (var e in batch)
                {
                    if (parser.PastUntil(e)) yield break;
                    yield return e;
                }
                if (next == position) break;
                position = next;
            }
            if (stopped)
            {
                var rest = new List<LogEntry>();
                parser.Flush(rest);
                foreach (var e in rest)
                {
                    if (parser.PastUntil(e)) yield break;
                    yield return e;
                }
            }
        }
        if (stopped) yield break;
        while (true)
        {
            var finished = stopWhen is { IsCompleted: true };
            var batch = new List<LogEntry>();
            var length = new FileInfo(path) is { Exists: true } fi ? fi.Length : 0;
            if (length < position) position = 0; // rotated or truncated: start over on the new file
            var next = ReadMore(path, position, parser, batch, ChunkBytes);
            var more = next != position && next < length;
            position = next;
            if (finished && !more) parser.Flush(batch);
            foreach (var e in batch)
            {
                if (parser.PastUntil(e)) yield break;
                yield return e;
            }
            if (more) continue;
            if (finished) yield break;
            await Delay(options, stopWhen, cancellationToken);
        }
    }

    /// <summary>How much of a log is read before its entries are handed on.</summary>
    private const int ChunkBytes = 1 << 20;

    private const int TailBlock = 1 << 16;

    /// <summary>How far before the wanted entries a tail read looks for the first pieces of interleaved partial lines.</summary>
    private const int MaxExtension = 1 << 20;

    /// <summary>
    /// The offset where the records of the last <paramref name="count"/> entries (of the wanted streams) before
    /// <paramref name="end"/> begin, found by reading the file backwards in 64 KiB blocks. An entry is an F record
    /// with the P records before it (a line longer than a record), or an unterminated run of P records at the end.
    /// </summary>
    internal static long TailStart(string path, LogReadOptions options, int count, long end)
    {
        if (count <= 0) return end;
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1);
        var found = 0;
        var inside = new HashSet<StdStream>();
        StdStream? extending = null;
        var candidate = 0L;
        var reached = 0L;
        var open = new HashSet<StdStream>();
        var carry = Array.Empty<byte>();
        var position = end;
        while (position > 0)
        {
            var size = (int)Math.Min(TailBlock, position);
            position -= size;
            var data = new byte[size + carry.Length];
            file.Seek(position, SeekOrigin.Begin);
            file.ReadExactly(data, 0, size);
            carry.CopyTo(data, size);
            var lineEnd = data.Length;
            for (var i = data.Length - 1; i >= -1; i--)
            {
                if (i >= 0 && data[i] != (byte)'\n') continue;
                if (i < 0 && position > 0)
                {
                    carry = data[..lineEnd]; // the line goes on in the block before
                    break;
                }
                var lineStart = position + i + 1;
                var line = data.AsSpan(i + 1, lineEnd - (i + 1));
                lineEnd = i;
                if (line.Length == 0 || !TryParseRecord(line, out var stream, out _, out var partial, out _)) continue;
                if (extending is not null)
                {
                    // Back to the first piece of every entry that ends after the start (the two streams' pieces can
                    // interleave): a stream is done at its previous F. Entries before the wanted ones are read
                    // again and dropped by the caller's TakeLast. At most MaxExtension further back.
                    if (reached - lineStart > MaxExtension) return candidate;
                    if (!partial) open.Remove(stream);
                    else if (open.Contains(stream)) candidate = lineStart;
                    if (open.Count == 0) return candidate;
                    continue;
                }
                var startsEntry = !partial || inside.Add(stream);
                if (!partial) inside.Add(stream);
                if (!startsEntry || !Wanted(options, stream)) continue;
                if (++found < count) continue;
                extending = stream;
                candidate = lineStart;
                reached = lineStart;
                open.UnionWith(inside);
                if (!partial) open.Remove(stream); // this entry could still have pieces before: keep it open
                open.Add(stream);
            }
        }
        return extending is not null ? candidate : 0;
    }

    private static bool Wanted(LogReadOptions options, StdStream stream) =>
        stream == StdStream.Stdout ? options.Stdout : stream == StdStream.Stderr && options.Stderr;

    private static async Task Delay(LogReadOptions options, Task? stopWhen, CancellationToken cancellationToken)
    {
        var delay = Task.Delay(options.PollInterval, cancellationToken);
        await (stopWhen is null ? delay : Task.WhenAny(delay, stopWhen));
        cancellationToken.ThrowIfCancellationRequested();
    }

    /// <summary>Parses complete records from <paramref name="position"/> on, stopping after about <paramref name="maxBytes"/>; returns the offset after the last complete record.</summary>
    private static long ReadMore(string path, long position, Parser parser, List<LogEntry> into, long maxBytes)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1 << 16);
        stream.Seek(position, SeekOrigin.Begin);
        var buffer = new byte[1 << 16];
        var pending = new List<byte>();
        var consumed = position;
        int n;
        while (consumed - position < maxBytes && (n = stream.Read(buffer)) > 0)
        {
            var span = buffer.AsSpan(0, n);
            while (true)
            {
                var nl = span.IndexOf((byte)'\n');
                if (nl < 0)
                {
                    pending.AddRange(span.ToArray());
                    break;
                }
                byte[] line;
                if (pending.Count > 0)
                {
                    pending.AddRange(span[..nl].ToArray());
                    line = pending.ToArray();
                    pending.Clear();
                }
                else
                {
                    line = span[..nl].ToArray();
                }
                consumed += line.Length + 1;
                parser.Feed(line, into);
                span = span[(nl + 1)..];
            }
        }
        // An incomplete last record stays unread until conmon finishes writing it.
        return consumed;
    }

    /// <summary>Parses one record (without its newline).</summary>
    public static bool TryParseRecord(ReadOnlySpan<byte> line, out StdStream stream, out DateTimeOffset timestamp, out bool partial, out ReadOnlySpan<byte> content)
    {
        stream = default;
        timestamp = default;
        partial = false;
        content = default;
        var s1 = line.IndexOf((byte)' ');
        if (s1 <= 0) return false;
        var rest = line[(s1 + 1)..];
        var s2 = rest.IndexOf((byte)' ');
        if (s2 <= 0) return false;
        var streamName = rest[..s2];
        if (streamName.SequenceEqual("stdout"u8)) stream = StdStream.Stdout;
        else if (streamName.SequenceEqual("stderr"u8)) stream = StdStream.Stderr;
        else return false;
        rest = rest[(s2 + 1)..];
        if (rest.Length < 1) return false;
        if (rest[0] == (byte)'P') partial = true;
        else if (rest[0] != (byte)'F') return false;
        content = rest.Length > 1 ? rest[2..] : default;
        return TryParseTimestamp(Encoding.ASCII.GetString(line[..s1]), out timestamp);
    }

    /// <summary>RFC 3339 with up to nanoseconds ("2024-05-01T12:00:00.123456789+00:00"); kept to 100 ns.</summary>
    public static bool TryParseTimestamp(string text, out DateTimeOffset value)
    {
        var dot = text.IndexOf('.');
        if (dot > 0)
        {
            var end = dot + 1;
            while (end < text.Length && char.IsAsciiDigit(text[end])) end++;
            var fraction = text[(dot + 1)..end];
            if (fraction.Length > 7) fraction = fraction[..7];
            text = text[..(dot + 1)] + fraction.PadRight(7, '0') + text[end..];
        }
        return DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out value);
    }

    private sealed class Parser(LogReadOptions options)
    {
        private readonly Dictionary<StdStream, (DateTimeOffset Start, List<byte> Bytes)> _partial = [];

        public void Feed(byte[] line, List<LogEntry> into)
        {
            if (!TryParseRecord(line, out var stream, out var ts, out var partial, out var content)) return;
            if (_partial.TryGetValue(stream, out var open))
            {
                open.Bytes.AddRange(content.ToArray());
                if (partial) return;
                _partial.Remove(stream);
                open.Bytes.Add((byte)'\n');
                Emit(new LogEntry(stream, open.Start, open.Bytes.ToArray()), into);
                return;
            }
            if (partial)
            {
                _partial[stream] = (ts, [.. content.ToArray()]);
                return;
            }
            var bytes = new byte[content.Length + 1];
            content.CopyTo(bytes);
            bytes[^1] = (byte)'\n';
            Emit(new LogEntry(stream, ts, bytes), into);
        }

        /// <summary>Emits unterminated lines (the writer is gone).</summary>
        public void Flush(List<LogEntry> into)
        {
            foreach (var (stream, open) in _partial.OrderBy(p => p.Value.Start))
                Emit(new LogEntry(stream, open.Start, open.Bytes.ToArray()), into);
            _partial.Clear();
        }

        public bool PastUntil(LogEntry e) => options.Until is { } until && e.Timestamp > until;

        private void Emit(LogEntry e, List<LogEntry> into)
        {
            if (e.Stream == StdStream.Stdout && !options.Stdout) return;
            if (e.Stream == StdStream.Stderr && !options.Stderr) return;
            if (options.Since is { } since && e.Timestamp < since) return;
            into.Add(e);
        }
    }
}
