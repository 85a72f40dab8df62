using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

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
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var head = $"{previous}\n{streamKey}\n{version}\n{data.GetType().FullName}\n{metadata.User}\n{metadata.Node}\n" +
                   $"{metadata.CorrelationId}\n{metadata.CausationId ?? ""}\n";
        hash.AppendData(Encoding.UTF8.GetBytes(head));
        hash.AppendData(CanonicalJsonUtf8(data));
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    public static string CanonicalJson(object data) => Encoding.UTF8.GetString(CanonicalJsonUtf8(data));

    /// <summary>The body as compact JSON with every object's keys in ordinal order.</summary>
    public static byte[] CanonicalJsonUtf8(object data)
    {
        using var document = JsonDocument.Parse(JsonSerializer.SerializeToUtf8Bytes(data, data.GetType(), Json));
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(1024);
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
            Write(writer, document.RootElement);
        return buffer.WrittenSpan.ToArray();
    }

    private static void Write(Utf8JsonWriter writer, JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                writer.WriteStartObject();
                foreach (var property in element.EnumerateObject().OrderBy(p => p.Name, StringComparer.Ordinal))
                {
                    writer.WritePropertyName(property.Name);
                    Write(writer, property.Value);
                }
                writer.WriteEndObject();
                break;
            case JsonValueKind.Array:
                writer.WriteStartArray();
                foreach (var item in element.EnumerateArray()) Write(writer, item);
                writer.WriteEndArray();
                break;
            default:
                element.WriteTo(writer);
                break;
        }
    }
}
