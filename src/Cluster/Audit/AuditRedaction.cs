using System.Text.Json;
using System.Text.Json.Nodes;

namespace Flotilla.Cluster.Audit;

/// <summary>
/// What an event body looks like on every audit read path (query, export, follow, <c>docker events</c>).
/// Events are immutable and are the only state a container is started from on any host, so secrets the engine
/// needs (a container's <c>-e DB_PASSWORD=…</c>) stay in the store; they are hidden when read back as audit:
/// password hashes become <see cref="Redacted"/>, and every environment entry keeps its name with its value
/// replaced (<c>DB_PASSWORD=&lt;redacted&gt;</c>) — in <c>Env</c> arrays at any depth and inside the Docker JSON
/// that events keep as strings (<c>ConfigJson</c>, which repeats the environment for inspect; image configs).
/// </summary>
public static class AuditRedaction
{
    /// <summary>Fields stored for the system's own use and never shown (password hashes).</summary>
    public static readonly IReadOnlyList<string> SecretFields = ["PasswordHash"];

    public const string Redacted = "[redacted]";

    /// <summary>The value shown for every environment variable: <c>NAME=&lt;redacted&gt;</c>.</summary>
    public const string RedactedValue = "<redacted>";

    private const string EnvField = "Env";

    /// <summary>String fields that hold a Docker JSON document of their own (may carry an <c>Env</c>).</summary>
    private const string EmbeddedJsonSuffix = "ConfigJson";

    public static JsonElement Redact(string json)
    {
        if (!MayHoldSecrets(json)) return JsonDocument.Parse(json).RootElement.Clone();
        var node = JsonNode.Parse(json);
        Walk(node);
        return JsonSerializer.SerializeToElement(node);
    }

    /// <summary><c>NAME=value</c> → <c>NAME=&lt;redacted&gt;</c>; an entry without a value (unset) is kept.</summary>
    public static string RedactEnvEntry(string entry) =>
        entry.IndexOf('=') is var equals and >= 0 ? entry[..(equals + 1)] + RedactedValue : entry;

    private static bool MayHoldSecrets(string json) =>
        json.Contains(EnvField, StringComparison.Ordinal) || SecretFields.Any(f => json.Contains(f, StringComparison.Ordinal));

    private static void Walk(JsonNode? node)
    {
        switch (node)
        {
            case JsonObject o:
                foreach (var name in o.Select(p => p.Key).ToList())
                {
                    var value = o[name];
                    if (SecretFields.Contains(name)) o[name] = Redacted;
                    else if (name == EnvField && value is JsonArray env) RedactEnv(env);
                    else if (name.EndsWith(EmbeddedJsonSuffix, StringComparison.Ordinal) && value is JsonValue v &&
                             v.TryGetValue<string>(out var text) && MayHoldSecrets(text))
                        o[name] = RedactEmbedded(text);
                    else Walk(value);
                }
                break;
            case JsonArray a:
                foreach (var item in a) Walk(item);
                break;
        }
    }

    private static void RedactEnv(JsonArray env)
    {
        for (var i = 0; i < env.Count; i++)
            if (env[i] is JsonValue v && v.TryGetValue<string>(out var entry)) env[i] = RedactEnvEntry(entry);
    }

    private static string RedactEmbedded(string json)
    {
        try
        {
            var node = JsonNode.Parse(json);
            Walk(node);
            return node?.ToJsonString() ?? json;
        }
        catch (JsonException)
        {
            // Not JSON after all: nothing of it can be told apart, so none of it is shown.
            return Redacted;
        }
    }
}
