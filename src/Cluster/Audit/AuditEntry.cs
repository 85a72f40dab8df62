using System.Text.Json;

namespace Flotilla.Cluster.Audit;

/// <summary>One stored event as the audit trail shows it: where it sits, who caused it, and its body.</summary>
/// <param name="Sequence">The store's global sequence number: the cursor of every audit query.</param>
/// <param name="Type">Marten's event type name (<c>container_started</c>).</param>
public sealed record AuditEntry(
    long Sequence,
    DateTimeOffset Time,
    string Stream,
    long Version,
    string Type,
    string? User,
    string? Node,
    string? CorrelationId,
    string? CausationId,
    JsonElement Data)
{
    public AuditObject Object => AuditObject.FromStream(Stream);
}

/// <summary>What a stream is about: <c>container-ab12…</c> → (container, ab12…).</summary>
public sealed record AuditObject(string Kind, string Id)
{
    /// <summary>Stream key prefixes by object kind (longest first, so <c>registry-user-</c> wins over a bare kind).</summary>
    public static readonly IReadOnlyList<(string Kind, string Prefix)> Prefixes =
    [
        ("registry-user", "registry-user-"),
        ("cluster-access", "cluster-access-"),
        ("container", "container-"),
        ("image", "image-"),
        ("node", "node-"),
        ("repository", "repository-"),
        ("network", "network-"),
        ("volume", "volume-"),
    ];

    public static IReadOnlyList<string> Kinds { get; } = [.. Prefixes.Select(p => p.Kind), "registry-access", "api-access"];

    public static AuditObject FromStream(string stream)
    {
        foreach (var (kind, prefix) in Prefixes)
            if (stream.StartsWith(prefix, StringComparison.Ordinal)) return new AuditObject(kind, stream[prefix.Length..]);
        return new AuditObject(stream, "");
    }

    /// <summary>The stream key of an object of a known kind, or null for an unknown kind.</summary>
    public static string? StreamKey(string kind, string id)
    {
        if (kind is "registry-access" or "api-access") return kind;
        foreach (var (k, prefix) in Prefixes)
            if (k == kind) return prefix + id;
        return null;
    }

    /// <summary>The SQL LIKE pattern of every stream of a kind, or null for an unknown kind.</summary>
    public static string? StreamPattern(string kind) =>
        kind is "registry-access" or "api-access" ? kind : Prefixes.FirstOrDefault(p => p.Kind == kind).Prefix is { } prefix ? prefix + "%" : null;
}

/// <summary>
/// Which events an audit query wants. Every condition narrows; an empty filter is every event.
/// Paging is by sequence: <see cref="After"/> (ascending) or <see cref="Before"/> (descending) is the cursor.
/// </summary>
public sealed record AuditFilter
{
    public IReadOnlyList<string> Streams { get; init; } = [];
    /// <summary>SQL LIKE patterns on the stream key (object kinds): any of them.</summary>
    public IReadOnlyList<string> StreamPatterns { get; init; } = [];
    public string? User { get; init; }
    /// <summary>Event type names (<c>container_started</c>): any of them.</summary>
    public IReadOnlyList<string> Types { get; init; } = [];
    /// <summary>The node the change happened on (the <c>node</c> header).</summary>
    public string? Node { get; init; }
    public string? CorrelationId { get; init; }
    /// <summary>The client's own request id (<c>X-Request-Id</c>) is recorded as the causation id.</summary>
    public string? CausationId { get; init; }
    public DateTimeOffset? Since { get; init; }
    public DateTimeOffset? Until { get; init; }
    public long After { get; init; }
    public long? Before { get; init; }
    /// <summary>Upper bound (inclusive) on the sequence: what a live follow knows to be complete.</summary>
    public long? UpTo { get; init; }
    public bool Descending { get; init; }
    public int Limit { get; init; } = 100;
}

/// <summary>A page of entries and the cursor of the next page (null when this was the last).</summary>
public sealed record AuditPage(IReadOnlyList<AuditEntry> Entries, long? NextCursor);
