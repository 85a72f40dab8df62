using System.Security.Cryptography;

namespace Flotilla.NodeRuntime.Storage;

/// <summary>A content digest, <c>sha256:&lt;64 lowercase hex&gt;</c>. Only sha256 is accepted.</summary>
public readonly record struct Digest
{
    public const string Sha256 = "sha256";

    private Digest(string hex) => Hex = hex;

    /// <summary>64 lowercase hex characters.</summary>
    public string Hex { get; }

    public string Algorithm => Sha256;

    public override string ToString() => $"{Sha256}:{Hex}";

    /// <summary>The first 12 hex characters, as Docker shows ids.</summary>
    public string Short => Hex[..12];

    public static Digest Parse(string text) =>
        TryParse(text, out var d) ? d : throw new FormatException($"invalid digest '{Truncate(text)}': expected sha256:<64 hex>");

    public static bool TryParse(string? text, out Digest digest)
    {
        digest = default;
        if (text is null || text.Length != Sha256.Length + 1 + 64 || !text.StartsWith("sha256:", StringComparison.Ordinal)) return false;
        var hex = text.AsSpan(7);
        foreach (var c in hex)
            if (!char.IsAsciiHexDigitLower(c) && !char.IsAsciiDigit(c)) return false;
        digest = new Digest(hex.ToString());
        return true;
    }

    public static Digest FromHash(ReadOnlySpan<byte> sha256) => new(Convert.ToHexStringLower(sha256));

    public static Digest Of(ReadOnlySpan<byte> content) => FromHash(SHA256.HashData(content));

    private static string Truncate(string s) => s.Length > 80 ? s[..80] + "…" : s;
}

/// <summary>An OCI content descriptor: what a blob is, its digest and its size.</summary>
public sealed record Descriptor(string MediaType, Digest Digest, long Size);
