namespace Flotilla.Gateway.Hijack;

/// <summary>
/// Docker's detach keys (default <c>ctrl-p,ctrl-q</c>): found in the client's stdin by the engine, they end
/// the attach and leave the container running. Bytes of a partial match are held back until it fails.
/// </summary>
public sealed class DetachKeys
{
    private readonly byte[] _sequence;
    private int _matched;

    public DetachKeys(byte[] sequence) => _sequence = sequence;

    public static readonly byte[] Default = [0x10, 0x11];

    /// <summary>Parses Docker's syntax: comma-separated <c>ctrl-&lt;key&gt;</c> or single characters; null if invalid.</summary>
    public static byte[]? Parse(string? text)
    {
        if (string.IsNullOrEmpty(text)) return Default;
        var result = new List<byte>();
        foreach (var part in text.Split(','))
        {
            if (part.Length == 1) result.Add((byte)part[0]);
            else if (part.StartsWith("ctrl-", StringComparison.Ordinal) && part.Length == 6)
            {
                var c = char.ToLowerInvariant(part[5]);
                if (c is >= 'a' and <= 'z') result.Add((byte)(c - 'a' + 1));
                else if (c is '@' or '[' or '\\' or ']' or '^' or '_') result.Add((byte)(c - '@'));
                else return null;
            }
            else return null;
        }
        return result.ToArray();
    }

    /// <summary>Feeds client bytes; returns what to pass to the container and whether the sequence completed.</summary>
    public (byte[] Forward, bool Detach) Feed(ReadOnlySpan<byte> input)
    {
        var forward = new List<byte>(input.Length);
        foreach (var b in input)
        {
            if (b == _sequence[_matched])
            {
                if (++_matched == _sequence.Length) return (forward.ToArray(), true);
                continue;
            }
            forward.AddRange(_sequence.AsSpan(0, _matched).ToArray());
            _matched = b == _sequence[0] ? 1 : 0;
            if (_matched == 0) forward.Add(b);
        }
        return (forward.ToArray(), false);
    }
}
