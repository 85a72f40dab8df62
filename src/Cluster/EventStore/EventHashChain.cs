using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Flotilla.Cluster.EventStore;

/// <summary>
/// Tamper evidence: every event carries, in its <c>hash</c> header, SHA-256 over the previous event's hash in its
/// stream, its stream, version, type, metadata (user, node, correlation, causation) and a canonical JSON of its body.
/// Editing, deleting or inserting a row in PostgreSQL breaks the chain. The body is canonicalised (object keys sorted,
/// compact) because PostgreSQL's jsonb reorders keys: the hash is over what the event says, not over how it was
/// spelled. Without a key held outside the database someone who can rewrite the table can also rewrite the chain;
/// this finds hand edits and accidents, and checkpoints (<see cref="Audit.AuditLedger"/>) pin whole ranges.
/// </summary>
public static class EventHashChain
{
    public const string Header = "hash";

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.General)
    {
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() },
    };

    public static string Compute(string previous, string streamKey, long version, object data, EventMetadata metadata)
    {
        var builder = new StringBuilder()
            .Append(previous).Append('\n')
            .Append(streamKey).Append('\n')
            .Append(version).Append('\n')
            .Append(data.GetType().FullName).Append('\n')
            .Append(metadata.User).Append('\n')
            .Append(metadata.Node).Append('\n')
            .Append(metadata.CorrelationId).Append('\n')
            .Append(metadata.CausationId ?? "").Append('\n')
            .Append(CanonicalJson(data));
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(builder.ToString())));
    }

    public static string CanonicalJson(object data)
    {
        var node = JsonSerializer.SerializeToNode(data, data.GetType(), Json);
        return Sort(node)?.ToJsonString() ?? "null";
    }

    private static JsonNode? Sort(JsonNode? node) => node switch
    {
        JsonObject o => new JsonObject(o.OrderBy(p => p.Key, StringComparer.Ordinal)
            .Select(p => KeyValuePair.Create(p.Key, Sort(p.Value?.DeepClone())))),
        JsonArray a => new JsonArray(a.Select(x => Sort(x?.DeepClone())).ToArray()),
        _ => node?.DeepClone(),
    };
}
