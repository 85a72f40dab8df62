using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Flotilla.Cluster.Audit;

/// <summary>
/// The key audit checkpoints are signed with: ECDSA P-256 in a file only gateways hold (<c>&lt;data&gt;/pki/audit-key.pem</c>,
/// 0600), never in the database, so whoever can rewrite the events and recompute their hash chain (a node, a database
/// login) cannot make checkpoints that verify. Next to it, <c>audit-key.since</c> records the first checkpoint this key
/// signed: from there on, an unsigned checkpoint is a forgery, not one from before signing existed.
/// </summary>
public sealed class AuditCheckpointKey : IDisposable
{
    public const string FileName = "audit-key.pem";
    private readonly ECDsa _key;
    private readonly string? _sinceFile;

    private AuditCheckpointKey(ECDsa key, string? sinceFile)
    {
        _key = key;
        _sinceFile = sinceFile;
        KeyId = KeyIdOf(key);
    }

    /// <summary>First 16 hex digits of the SHA-256 of the public key (SubjectPublicKeyInfo).</summary>
    public string KeyId { get; }

    /// <summary>The first checkpoint this key signed, when it has signed one.</summary>
    public int? Since => _sinceFile is not null && File.Exists(_sinceFile)
        && int.TryParse(File.ReadAllText(_sinceFile).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var id) ? id : null;

    /// <summary>Reads the key in <paramref name="path"/>, or makes one there (0600 from the first byte) when there is none.</summary>
    public static AuditCheckpointKey LoadOrCreate(string path)
    {
        var since = Path.ChangeExtension(path, ".since");
        var key = ECDsa.Create();
        if (File.Exists(path))
        {
            key.ImportFromPem(File.ReadAllText(path));
            return new AuditCheckpointKey(key, since);
        }
        key.GenerateKey(ECCurve.NamedCurves.nistP256);
        // 0600 from the first byte, in a 0700 directory (the cluster PKI's own writer).
        Security.PemFile.WritePrivate(path, key.ExportPkcs8PrivateKeyPem());
        return new AuditCheckpointKey(key, since);
    }

    /// <summary>A key held in memory only (tests; a verifier given a key another way).</summary>
    public static AuditCheckpointKey Ephemeral() => new(ECDsa.Create(ECCurve.NamedCurves.nistP256), null);

    /// <summary>Signs <paramref name="checkpoint"/>: sets its key id and signature.</summary>
    public void Sign(AuditCheckpoint checkpoint)
    {
        checkpoint.KeyId = KeyId;
        checkpoint.Signature = Convert.ToBase64String(_key.SignData(Payload(checkpoint), HashAlgorithmName.SHA256));
    }

    /// <summary>After a signed checkpoint is stored: the first one is remembered next to the key.</summary>
    public void Stored(AuditCheckpoint checkpoint)
    {
        if (_sinceFile is null || File.Exists(_sinceFile)) return;
        Security.PemFile.WritePrivate(_sinceFile, checkpoint.Id.ToString(CultureInfo.InvariantCulture));
    }

    /// <summary>True when the checkpoint carries this key's valid signature over its fields.</summary>
    public bool Verifies(AuditCheckpoint checkpoint)
    {
        if (checkpoint.KeyId != KeyId || string.IsNullOrEmpty(checkpoint.Signature)) return false;
        try
        {
            return _key.VerifyData(Payload(checkpoint), Convert.FromBase64String(checkpoint.Signature), HashAlgorithmName.SHA256);
        }
        catch (FormatException)
        {
            return false;
        }
    }

    /// <summary>What is signed: every field but the time, which nothing verifies.</summary>
    private static byte[] Payload(AuditCheckpoint c) => Encoding.UTF8.GetBytes(string.Join('\n',
        "flotilla-audit-checkpoint-v1", c.Id.ToString(CultureInfo.InvariantCulture), c.FromSequence.ToString(CultureInfo.InvariantCulture),
        c.ToSequence.ToString(CultureInfo.InvariantCulture), c.Count.ToString(CultureInfo.InvariantCulture), c.Hash, c.PreviousHash));

    private static string KeyIdOf(ECDsa key) => Convert.ToHexStringLower(SHA256.HashData(key.ExportSubjectPublicKeyInfo()))[..16];

    public void Dispose() => _key.Dispose();
}
