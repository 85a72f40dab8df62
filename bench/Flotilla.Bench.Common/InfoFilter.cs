using System.Text;

namespace Flotilla.Bench.Common;

/// <summary>Drops Akka's [INFO]/[DEBUG] lines from stdout, so a benchmark's report stays readable.</summary>
public sealed class InfoFilter(TextWriter inner) : TextWriter
{
    private readonly StringBuilder _line = new();
    private readonly Lock _gate = new();

    public override Encoding Encoding => inner.Encoding;

    public override void Write(char value)
    {
        lock (_gate)
        {
            if (value != '\n') { _line.Append(value); return; }
            var line = _line.ToString();
            _line.Clear();
            if (!line.StartsWith("[INFO]", StringComparison.Ordinal) && !line.StartsWith("[DEBUG]", StringComparison.Ordinal))
                inner.WriteLine(line.TrimEnd('\r'));
        }
    }

    public override void Write(string? value)
    {
        if (value is null) return;
        lock (_gate) foreach (var c in value) Write(c);
    }

    public override void WriteLine(string? value)
    {
        lock (_gate)
        {
            Write(value);
            Write('\n');
        }
    }

    public override void Flush()
    {
        lock (_gate) inner.Flush();
    }
}
