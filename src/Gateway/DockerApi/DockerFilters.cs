using System.Text.Json;

namespace Flotilla.Gateway.DockerApi;

/// <summary>
/// The <c>filters</c> query parameter: <c>{"key":{"value":true}}</c>, or the legacy
/// <c>{"key":["value"]}</c>. Unknown keys are refused with Docker's message by the caller.
/// </summary>
public sealed class DockerFilters
{
    private readonly Dictionary<string, List<string>> _values;

    private DockerFilters(Dictionary<string, List<string>> values) => _values = values;

    public static readonly DockerFilters Empty = new([]);

    public IEnumerable<string> Keys => _values.Keys;

    public IReadOnlyList<string> Get(string key) => _values.TryGetValue(key, out var v) ? v : [];

    public bool Has(string key) => _values.ContainsKey(key);

    public static DockerFilters Parse(string? json)
    {
        if (string.IsNullOrWhiteSpace(json)) return Empty;
        try
        {
            using var doc = JsonDocument.Parse(json);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new FormatException("invalid filter: expected a JSON object");
            var values = new Dictionary<string, List<string>>(StringComparer.Ordinal);
            foreach (var key in doc.RootElement.EnumerateObject())
            {
                var list = new List<string>();
                switch (key.Value.ValueKind)
                {
                    case JsonValueKind.Object:
                        list.AddRange(key.Value.EnumerateObject().Where(v => v.Value.ValueKind == JsonValueKind.True).Select(v => v.Name));
                        break;
                    case JsonValueKind.Array:
                        list.AddRange(key.Value.EnumerateArray().Where(v => v.ValueKind == JsonValueKind.String).Select(v => v.GetString()!));
                        break;
                    default:
                        throw new FormatException($"invalid filter '{key.Name}'");
                }
                values[key.Name] = list;
            }
            return new DockerFilters(values);
        }
        catch (JsonException ex)
        {
            throw new FormatException($"invalid filter: {ex.Message}");
        }
    }

    /// <summary>Refuses keys outside <paramref name="allowed"/>: "invalid filter 'x'".</summary>
    public void Validate(params string[] allowed)
    {
        foreach (var key in _values.Keys)
            if (!allowed.Contains(key)) throw new FormatException($"invalid filter '{key}'");
    }

    /// <summary>Docker's glob matching for reference filters (<c>*</c>, <c>?</c>, <c>[...]</c> as path.Match).</summary>
    public static bool GlobMatch(string pattern, string text) =>
        System.IO.Enumeration.FileSystemName.MatchesSimpleExpression(pattern, text, ignoreCase: false) && !(pattern.Count(c => c == '/') != text.Count(c => c == '/') && pattern.Contains('*'));
}
