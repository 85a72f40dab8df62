namespace Flotilla.NodeRuntime.Distribution;

/// <summary>
/// One challenge of a <c>WWW-Authenticate</c> header (RFC 7235 §4.1): a scheme (<c>Bearer</c>, <c>Basic</c>)
/// and its parameters (<c>realm</c>, <c>service</c>, <c>scope</c>), parameter names lowercased.
/// </summary>
public sealed record AuthChallenge(string Scheme, IReadOnlyDictionary<string, string> Parameters)
{
    public bool IsBearer => Scheme.Equals("Bearer", StringComparison.OrdinalIgnoreCase);
    public bool IsBasic => Scheme.Equals("Basic", StringComparison.OrdinalIgnoreCase);

    public string? this[string name] => Parameters.TryGetValue(name, out var v) ? v : null;

    /// <summary>
    /// Parses every challenge of the given header values. Malformed parts are skipped, never thrown on:
    /// the header comes from a server we do not trust, and a challenge we cannot read is one we cannot answer.
    /// </summary>
    public static IReadOnlyList<AuthChallenge> Parse(IEnumerable<string> headerValues)
    {
        var result = new List<AuthChallenge>();
        foreach (var value in headerValues) ParseInto(value, result);
        return result;
    }

    public static IReadOnlyList<AuthChallenge> Parse(string headerValue) => Parse([headerValue]);

    private static void ParseInto(string s, List<AuthChallenge> result)
    {
        var pos = 0;
        while (pos < s.Length)
        {
            SkipSeparators(s, ref pos);
            var scheme = ReadToken(s, ref pos);
            if (scheme.Length == 0)
            {
                pos++; // not a token character: skip it
                continue;
            }
            var parameters = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            SkipSpaces(s, ref pos);
            while (pos < s.Length)
            {
                var start = pos;
                SkipSpaces(s, ref pos);
                var name = ReadToken(s, ref pos);
                SkipSpaces(s, ref pos);
                if (name.Length == 0 || pos >= s.Length || s[pos] != '=')
                {
                    // Not "name=": the next challenge's scheme (or a token68 we do not use).
                    pos = start;
                    break;
                }
                pos++; // '='
                if (pos < s.Length && s[pos] == '=')
                {
                    // token68 padding ("abc=="): a credential blob, not a parameter.
                    while (pos < s.Length && s[pos] == '=') pos++;
                    break;
                }
                SkipSpaces(s, ref pos);
                var value = pos < s.Length && s[pos] == '"' ? ReadQuoted(s, ref pos) : ReadToken(s, ref pos);
                parameters.TryAdd(name.ToLowerInvariant(), value);
                SkipSpaces(s, ref pos);
                if (pos < s.Length && s[pos] == ',') pos++;
            }
            result.Add(new AuthChallenge(scheme, parameters));
            // A token68 or stray text after the scheme: skip to the next comma.
            SkipSpaces(s, ref pos);
            if (pos < s.Length && !IsTokenChar(s[pos]) && s[pos] != ',') pos++;
        }
    }

    private static void SkipSpaces(string s, ref int pos)
    {
        while (pos < s.Length && (s[pos] == ' ' || s[pos] == '\t')) pos++;
    }

    private static void SkipSeparators(string s, ref int pos)
    {
        while (pos < s.Length && (s[pos] == ' ' || s[pos] == '\t' || s[pos] == ',')) pos++;
    }

    // RFC 7230 tchar, plus '/' so token68-ish values such as realm=https://x/token survive unquoted.
    private static bool IsTokenChar(char c) =>
        char.IsAsciiLetterOrDigit(c) || "!#$%&'*+-.^_`|~/:".Contains(c);

    private static string ReadToken(string s, ref int pos)
    {
        var start = pos;
        while (pos < s.Length && IsTokenChar(s[pos])) pos++;
        return s[start..pos];
    }

    private static string ReadQuoted(string s, ref int pos)
    {
        var sb = new System.Text.StringBuilder();
        pos++; // opening quote
        while (pos < s.Length && s[pos] != '"')
        {
            if (s[pos] == '\\' && pos + 1 < s.Length) pos++;
            sb.Append(s[pos++]);
        }
        if (pos < s.Length) pos++; // closing quote
        return sb.ToString();
    }
}
