using System.Security.Cryptography;
using System.Text.Json;

namespace Flotilla.NodeRuntime.Registry;

/// <summary>The chunk did not start where the upload ends (or was announced with another length).</summary>
public sealed class UploadRangeException(string message, long offset) : Exception(message)
{
    /// <summary>Bytes received so far: the client resumes from here.</summary>
    public long Offset { get; } = offset;
}

/// <summary>The session is gone: completed, cancelled, never started, or started in another repository.</summary>
public sealed class UploadUnknownException(string id) : Exception($"blob upload {id} unknown");

/// <summary>
/// One blob upload in progress: <c>&lt;uploads&gt;/&lt;uuid&gt;/data</c> holds the bytes received so far and
/// <c>state.json</c> the repository and the acknowledged length, so the upload can be resumed after a
/// restart. While the process lives the SHA-256 of the data is kept incrementally; a session loaded
/// from disk re-hashes its data once. Requests on one session are serialized by <see cref="Gate"/>.
/// </summary>
public sealed class UploadSession : IDisposable
{
    private const string DataFile = "data";
    private const string StateFile = "state.json";

    private UploadSession(string id, string directory, string repository, DateTimeOffset started, long offset, IncrementalHash hash)
    {
        Id = id;
        Directory = directory;
        Repository = repository;
        Started = started;
        Offset = offset;
        Hash = hash;
    }

    public string Id { get; }
    public string Directory { get; }
    public string Repository { get; }
    public DateTimeOffset Started { get; }
    /// <summary>Bytes acknowledged so far (the next chunk must start here).</summary>
    public long Offset { get; internal set; }
    /// <summary>SHA-256 over the first <see cref="Offset"/> bytes.</summary>
    internal IncrementalHash Hash { get; private set; }
    internal SemaphoreSlim Gate { get; } = new(1, 1);
    /// <summary>Set once completed or cancelled; later requests on it are refused.</summary>
    internal bool Closed { get; set; }

    public string DataPath => Path.Combine(Directory, DataFile);

    internal static UploadSession Create(string uploadsRoot, string repository)
    {
        var id = Guid.NewGuid().ToString("D");
        var directory = Path.Combine(uploadsRoot, id);
        System.IO.Directory.CreateDirectory(directory);
        File.Create(Path.Combine(directory, DataFile)).Dispose();
        var session = new UploadSession(id, directory, repository, DateTimeOffset.UtcNow, 0, IncrementalHash.CreateHash(HashAlgorithmName.SHA256));
        session.SaveState();
        return session;
    }

    /// <summary>
    /// Reloads a session after a restart. Bytes past the acknowledged offset (a chunk cut off by the
    /// crash) are dropped; the data is re-hashed so appends can continue.
    /// </summary>
    internal static async Task<UploadSession?> LoadAsync(string directory, CancellationToken cancellationToken)
    {
        var statePath = Path.Combine(directory, StateFile);
        var dataPath = Path.Combine(directory, DataFile);
        if (!File.Exists(statePath) || !File.Exists(dataPath)) return null;
        SessionState? state;
        try
        {
            state = JsonSerializer.Deserialize<SessionState>(await File.ReadAllBytesAsync(statePath, cancellationToken));
        }
        catch (JsonException)
        {
            return null;
        }
        if (state is null || string.IsNullOrEmpty(state.Repository)) return null;

        var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        long offset;
        await using (var data = new FileStream(dataPath, FileMode.Open, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.SequentialScan))
        {
            offset = Math.Min(state.Offset, data.Length);
            if (data.Length > offset) data.SetLength(offset);
            var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(1 << 20);
            try
            {
                long left = offset;
                while (left > 0)
                {
                    var read = await data.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, left)), cancellationToken);
                    if (read == 0) break;
                    hash.AppendData(buffer, 0, read);
                    left -= read;
                }
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            }
        }
        return new UploadSession(Path.GetFileName(directory), directory, state.Repository, state.Started, offset, hash);
    }

    /// <summary>Records the acknowledged offset (write to a temp file, then rename: never a torn state).</summary>
    internal void SaveState()
    {
        var temp = Path.Combine(Directory, StateFile + ".tmp");
        File.WriteAllBytes(temp, JsonSerializer.SerializeToUtf8Bytes(new SessionState(Repository, Offset, Started)));
        File.Move(temp, Path.Combine(Directory, StateFile), overwrite: true);
    }

    /// <summary>When the session was last written to (state is rewritten on every chunk).</summary>
    internal static DateTime LastTouchedUtc(string directory)
    {
        var state = Path.Combine(directory, StateFile);
        return File.Exists(state) ? File.GetLastWriteTimeUtc(state) : System.IO.Directory.GetLastWriteTimeUtc(directory);
    }

    internal void ReplaceHash(IncrementalHash hash) => Hash = hash;

    /// <summary>Frees the hash; the gate stays usable so requests still queued on it see <see cref="Closed"/>.</summary>
    public void Dispose() => Hash.Dispose();

    private sealed record SessionState(string Repository, long Offset, DateTimeOffset Started);
}
