using Flotilla.Contracts;

namespace Flotilla.Cluster.EventStore;

/// <summary>What every stored event carries besides its body.</summary>
public sealed record EventMetadata(string User, string Node, string CorrelationId, string? CausationId)
{
    public static EventMetadata From(RequestOrigin origin, string node) =>
        new(origin.User, node, origin.CorrelationId, origin.CausationId);
}

/// <summary>A stream as read back: its events in order and its current version (0 = empty).</summary>
public sealed record StoredStream(IReadOnlyList<object> Events, long Version);

/// <summary>
/// Append-only event streams with optimistic concurrency. The expected version is the
/// stream version the writer last saw; a mismatch is a <see cref="StreamVersionConflictException"/>.
/// </summary>
public interface IEventJournal
{
    Task<StoredStream> ReadAsync(string streamKey, CancellationToken cancellationToken = default);

    /// <summary>The stream's current version (0 = empty) without reading its events: one row, however long the stream.</summary>
    Task<long> VersionAsync(string streamKey, CancellationToken cancellationToken = default);

    /// <returns>The stream version after the append.</returns>
    Task<long> AppendAsync(string streamKey, long expectedVersion, IReadOnlyList<object> events, EventMetadata metadata,
        CancellationToken cancellationToken = default);
}

/// <summary>Another writer appended to the stream first: the caller's view is stale.</summary>
public sealed class StreamVersionConflictException(string streamKey, long expectedVersion, Exception? inner = null)
    : Exception($"Stream '{streamKey}' is no longer at version {expectedVersion}: another writer appended first", inner)
{
    public string StreamKey { get; } = streamKey;
    public long ExpectedVersion { get; } = expectedVersion;
}

/// <summary>
/// The append would give a read model a value another document already holds under a unique index (a container
/// name, say): nothing was written, and the caller's view of the stream is still current.
/// </summary>
public sealed class UniqueValueTakenException(string streamKey, string constraint, Exception? inner = null)
    : Exception($"Stream '{streamKey}': the value for '{constraint}' is already taken", inner)
{
    public string StreamKey { get; } = streamKey;
    public string Constraint { get; } = constraint;
}
