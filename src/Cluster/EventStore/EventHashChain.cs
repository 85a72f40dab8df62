using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Flotilla.Cluster.EventStore;

/// <summary>
/// One row of <c>mt_events</c> as a reader of the audit log sees it: every column the audit trail shows, and the body
/// as PostgreSQL stores it (JSON text). What format 2 of the chain hashes.
/// </summary>
/// <param name="Headers">The headers object as JSON, the hash itself left out; null when the row has none.</param>
/// <param name="Body">The body as JSON: what Marten wrote, or <c>data::text</c> as PostgreSQL returns it.</param>
public sealed record StoredEventRow(
    string StreamKey, long Version, string EventType, DateTimeOffset Timestamp,
    string User, string CorrelationId, string? CausationId, string? Headers, string Body);

/// <summary>
/// Tamper evidence: every event carries, in its <c>hash</c> header, SHA-256 over the previous event's hash in its
/// stream and the event's row (<see cref="StoredEventRow"/>). Editing, deleting or inserting a row in PostgreSQL breaks
/// the chain. Without a key held outside the database someone who can rewrite the table can also rewrite the chain;
/// this finds hand edits and accidents, and checkpoints (<see cref="Audit.AuditLedger"/>) pin whole ranges.
/// <para>
/// Format 2 (hashes written as <c>v2:&lt;hex&gt;</c>) covers the stored JSON body, so a field added, removed or renamed
/// by hand breaks it, and the type, timestamp and headers columns too. jsonb keeps no key order or whitespace and
/// spells numbers its own way, so both sides hash a canonical form of the JSON: object keys in ordinal order, compact,
/// strings re-escaped from their values, numbers as decimals (<c>1E+20</c> and <c>100000000000000000000</c> are one
/// number; <c>2</c> and <c>2.0</c> are not, as in jsonb). Two bodies that hash alike read alike.
/// </para>
/// <para>
/// Format 1 (bare hex, written before format 2) hashed the body as serialized from the event's record, so a verifier
/// could only compare it with the body read back into that record: fields the record does not have went unseen, and
/// the timestamp and type columns were not covered. Such events still verify by that rule and are counted
/// (<see cref="Audit.AuditVerification.Format1Events"/>); new events chain on from them in format 2.
/// </para>
/// </summary>
public static class EventHashChain
{
    public const string Header = "hash";

    /// <summary>The prefix of format-2 hashes; a hash without it is format 1.</summary>
    public const string Format2 = "v2:";

    public static bool IsFormat2(string hash) => hash.StartsWith(Format2, StringComparison.Ordinal);

    /// <summary>Format 2: over the previous hash and the row as stored.</summary>
    public static string Compute(string previous, StoredEventRow row)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(1024);
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        {
            // A JSON array: no field can run into the next, whatever its characters.
            writer.WriteStartArray();
            writer.WriteStringValue(previous);
            writer.WriteStringValue(row.StreamKey);
            writer.WriteNumberValue(row.Version);
            writer.WriteStringValue(row.EventType);
            writer.WriteNumberValue(UnixMicroseconds(row.Timestamp));
            writer.WriteStringValue(row.User);
            writer.WriteStringValue(row.CorrelationId);
            if (row.CausationId is null) writer.WriteNullValue();
            else writer.WriteStringValue(row.CausationId);
            if (row.Headers is null) writer.WriteNullValue();
            else WriteCanonical(writer, row.Headers, skipTopLevel: Header);
            WriteCanonical(writer, row.Body, skipTopLevel: null);
            writer.WriteEndArray();
        }
        return Format2 + Convert.ToHexStringLower(SHA256.HashData(buffer.WrittenSpan));
    }

    /// <summary>PostgreSQL keeps microseconds: a timestamp is hashed, and must be written, at that precision.</summary>
    public static DateTimeOffset ToStoredPrecision(DateTimeOffset at) =>
        new(at.UtcTicks - at.UtcTicks % 10, TimeSpan.Zero);

    private static long UnixMicroseconds(DateTimeOffset at) => (at.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) / 10;

    private static readonly JsonWriterOptions WriterOptions = new()
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>The JSON text in canonical form (see the class remarks); for tests and diagnostics.</summary>
    public static string Canonical(string json)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(json.Length);
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions)) WriteCanonical(writer, json, null);
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private static void WriteCanonical(Utf8JsonWriter writer, string json, string? skipTopLevel)
    {
        using var document = JsonDocument.Parse(json);
        if (skipTopLevel is not null && document.RootElement.ValueKind == JsonValueKind.Object)
        {
            writer.WriteStartObject();
            foreach (var property in document.RootElement.EnumerateObject().Where(p => p.Name != skipTopLevel).OrderBy(p => p.Name, StringComparer.Ordinal))
            {
                writer.WritePropertyName(property.Name);
                WriteCanonical(writer, property.Value);
            }
            writer.WriteEndObject();
        }
        else
            WriteCanonical(writer, document.RootElement);
    }

    private static void WriteCanonical(Utf8JsonWriter writer, JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                writer.WriteStartObject();
                foreach (var property in element.EnumerateObject().OrderBy(p => p.Name, StringComparer.Ordinal))
                {
                    writer.WritePropertyName(property.Name);
                    WriteCanonical(writer, property.Value);
                }
                writer.WriteEndObject();
                break;
            case JsonValueKind.Array:
                writer.WriteStartArray();
                foreach (var item in element.EnumerateArray()) WriteCanonical(writer, item);
                writer.WriteEndArray();
                break;
            case JsonValueKind.Number:
                // jsonb stores numbers as numeric: exponents spelled out, the scale kept (as decimal keeps it).
                var raw = element.GetRawText();
                writer.WriteRawValue(
                    decimal.TryParse(raw, NumberStyles.Float, CultureInfo.InvariantCulture, out var exact) ? exact.ToString(CultureInfo.InvariantCulture)
                    : double.Parse(raw, NumberStyles.Float, CultureInfo.InvariantCulture).ToString("R", CultureInfo.InvariantCulture),
                    skipInputValidation: true);
                break;
            default:
                // Strings are written from their value, so any escaping of the input is undone and redone alike.
                element.WriteTo(writer);
                break;
        }
    }

    /// <summary>Format 1, for events written before format 2: over the body as serialized from its record.</summary>
    public static string ComputeFormat1(string previous, string streamKey, long version, object data, EventMetadata metadata)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var head = $"{previous}\n{streamKey}\n{version}\n{data.GetType().FullName}\n{metadata.User}\n{metadata.Node}\n" +
                   $"{metadata.CorrelationId}\n{metadata.CausationId ?? ""}\n";
        hash.AppendData(Encoding.UTF8.GetBytes(head));
        hash.AppendData(Format1Json(data));
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    private static readonly JsonSerializerOptions Format1Serializer = new(JsonSerializerDefaults.General)
    {
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() },
    };

    private static byte[] Format1Json(object data)
    {
        using var document = JsonDocument.Parse(JsonSerializer.SerializeToUtf8Bytes(data, data.GetType(), Format1Serializer));
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(1024);
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
            WriteFormat1(writer, document.RootElement);
        return buffer.WrittenSpan.ToArray();
    }

    private static void WriteFormat1(Utf8JsonWriter writer, JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                writer.WriteStartObject();
                foreach (var property in element.EnumerateObject().OrderBy(p => p.Name, StringComparer.Ordinal))
                {
                    writer.WritePropertyName(property.Name);
                    WriteFormat1(writer, property.Value);
                }
                writer.WriteEndObject();
                break;
            case JsonValueKind.Array:
                writer.WriteStartArray();
                foreach (var item in element.EnumerateArray()) WriteFormat1(writer, item);
                writer.WriteEndArray();
                break;
            default:
                element.WriteTo(writer);
                break;
        }
    }
}
