using System.Text;
using System.Text.Json;

namespace Flotilla.NodeRuntime.Images;

/// <summary>
/// <c>docker import/commit --change</c>: applies Dockerfile instructions to an image's <see cref="ContainerConfig"/>.
/// Allowed, as in moby's <c>validCommitCommands</c>: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER,
/// VOLUME, WORKDIR. Other Dockerfile instructions are refused ("run is not a valid change command"), unknown words
/// with the Dockerfile parser's "unknown instruction". Variable substitution (<c>$VAR</c>) is not performed.
/// </summary>
public static class DockerfileChange
{
    private static readonly HashSet<string> Allowed = ["cmd", "entrypoint", "env", "expose", "label", "onbuild", "stopsignal", "user", "volume", "workdir"];

    private static readonly HashSet<string> Known =
        ["add", "arg", "cmd", "copy", "entrypoint", "env", "expose", "from", "healthcheck", "label", "maintainer", "onbuild", "run", "shell",
         "stopsignal", "user", "volume", "workdir"];

    private static readonly HashSet<string> SignalNames =
        ["ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT",
         "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "UNUSED"];

    /// <summary>Applies the change lines in order. Malformed or disallowed lines: <see cref="FormatException"/> with Docker's wording.</summary>
    public static ContainerConfig Apply(ContainerConfig? config, IEnumerable<string> changes)
    {
        var state = new State(config ?? new ContainerConfig());
        var lineNo = 0;
        foreach (var line in Lines(changes))
        {
            lineNo++;
            var trimmed = line.Trim();
            if (trimmed.Length == 0 || trimmed.StartsWith('#')) continue;
            var split = trimmed.IndexOfAny([' ', '\t']);
            var instruction = (split < 0 ? trimmed : trimmed[..split]).ToLowerInvariant();
            var rest = split < 0 ? "" : trimmed[(split + 1)..].Trim();
            if (!Known.Contains(instruction))
                throw new FormatException($"dockerfile parse error line {lineNo}: unknown instruction: {(split < 0 ? trimmed : trimmed[..split]).ToUpperInvariant()}");
            if (!Allowed.Contains(instruction)) throw new FormatException($"{instruction} is not a valid change command");
            state.Dispatch(instruction, rest, trimmed);
        }
        return state.Config;
    }

    /// <summary>Each change may itself hold several lines; a trailing backslash continues a line.</summary>
    private static IEnumerable<string> Lines(IEnumerable<string> changes)
    {
        foreach (var change in changes)
        {
            var pending = new StringBuilder();
            foreach (var raw in change.Replace("\r\n", "\n").Split('\n'))
            {
                if (raw.TrimEnd().EndsWith('\\'))
                {
                    var t = raw.TrimEnd();
                    pending.Append(t, 0, t.Length - 1);
                    continue;
                }
                pending.Append(raw);
                yield return pending.ToString();
                pending.Clear();
            }
            if (pending.Length > 0) yield return pending.ToString();
        }
    }

    private sealed class State(ContainerConfig config)
    {
        private bool _cmdSet;
        public ContainerConfig Config { get; private set; } = config;

        public void Dispatch(string instruction, string rest, string original)
        {
            var upper = instruction.ToUpperInvariant();
            if (rest.Length == 0) throw new FormatException($"{upper} requires at least one argument");
            switch (instruction)
            {
                case "cmd":
                    Config = Config with { Cmd = Command(rest) };
                    _cmdSet = true;
                    break;
                case "entrypoint":
                    Config = Config with { Entrypoint = Command(rest), Cmd = _cmdSet ? Config.Cmd : null };
                    break;
                case "env":
                    var env = new List<string>(Config.Env ?? []);
                    foreach (var (key, value) in NameValues(rest, "ENV"))
                    {
                        env.RemoveAll(e => e == key || e.StartsWith(key + "=", StringComparison.Ordinal));
                        env.Add($"{key}={value}");
                    }
                    Config = Config with { Env = env };
                    break;
                case "label":
                    var labels = new Dictionary<string, string>(Config.Labels ?? []);
                    foreach (var (key, value) in NameValues(rest, "LABEL")) labels[key] = value;
                    Config = Config with { Labels = labels };
                    break;
                case "workdir":
                    var dir = Words(rest) is [var only] ? only : throw new FormatException("WORKDIR requires exactly one argument");
                    Config = Config with { WorkingDir = dir.StartsWith('/') ? CleanPath(dir) : CleanPath("/" + (Config.WorkingDir ?? "") + "/" + dir) };
                    break;
                case "user":
                    Config = Config with { User = Words(rest) is [var user] ? user : throw new FormatException("USER requires exactly one argument") };
                    break;
                case "expose":
                    var ports = new Dictionary<string, JsonElement>(Config.ExposedPorts ?? []);
                    foreach (var port in Words(rest).SelectMany(ExpandPort)) ports[port] = EmptyObject();
                    Config = Config with { ExposedPorts = ports };
                    break;
                case "volume":
                    var volumes = new Dictionary<string, JsonElement>(Config.Volumes ?? []);
                    var paths = TryJsonArray(rest) ?? Words(rest);
                    if (paths.Count == 0) throw new FormatException("VOLUME requires at least one argument");
                    foreach (var path in paths)
                    {
                        if (string.IsNullOrWhiteSpace(path)) throw new FormatException("VOLUME specified can not be an empty string");
                        volumes[path] = EmptyObject();
                    }
                    Config = Config with { Volumes = volumes };
                    break;
                case "stopsignal":
                    var signal = Words(rest) is [var s] ? s : throw new FormatException("STOPSIGNAL requires exactly one argument");
                    if (!IsSignal(signal)) throw new FormatException($"Invalid signal: {signal}");
                    Config = Config with { StopSignal = signal };
                    break;
                case "onbuild":
                    var split = rest.IndexOfAny([' ', '\t']);
                    var trigger = (split < 0 ? rest : rest[..split]).ToLowerInvariant();
                    if (trigger == "onbuild") throw new FormatException("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
                    if (trigger is "from" or "maintainer") throw new FormatException($"{trigger.ToUpperInvariant()} isn't allowed as an ONBUILD trigger");
                    if (!Known.Contains(trigger)) throw new FormatException($"dockerfile parse error: unknown instruction: {trigger.ToUpperInvariant()}");
                    var text = original.TrimStart()[("ONBUILD".Length)..].Trim();
                    Config = Config with { OnBuild = [.. Config.OnBuild ?? [], text] };
                    break;
            }
        }
    }

    /// <summary>JSON (exec) form when the text is a JSON string array, else shell form run by <c>/bin/sh -c</c>.</summary>
    private static List<string> Command(string rest) => TryJsonArray(rest) ?? ["/bin/sh", "-c", rest];

    private static List<string>? TryJsonArray(string rest)
    {
        if (!rest.StartsWith('[')) return null;
        try
        {
            return JsonSerializer.Deserialize<List<string>>(rest) is { } list && !list.Contains(null!) ? list : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static JsonElement EmptyObject() => JsonDocument.Parse("{}").RootElement.Clone();

    /// <summary><c>k=v k2="v 2"</c>, or the legacy single pair <c>k v with spaces</c>.</summary>
    private static List<(string Key, string Value)> NameValues(string rest, string instruction)
    {
        var words = Words(rest);
        if (words.Count == 0) throw new FormatException($"{instruction} requires at least one argument");
        if (!words[0].Contains('='))
        {
            // Legacy form: the first word is the key, the rest of the line (unquoted) the value.
            var key = words[0];
            var split = rest.IndexOfAny([' ', '\t']);
            if (split < 0) throw new FormatException($"{instruction} must have two arguments");
            var value = string.Join(' ', Words(rest[split..].Trim()));
            return [(key, value)];
        }
        var pairs = new List<(string, string)>();
        foreach (var word in words)
        {
            var eq = word.IndexOf('=');
            if (eq < 0) throw new FormatException($"Syntax error - can't find = in \"{word}\". Must be of the form: name=value");
            if (eq == 0) throw new FormatException($"{instruction} names can not be blank");
            pairs.Add((word[..eq], word[(eq + 1)..]));
        }
        return pairs;
    }

    /// <summary>Splits on unquoted whitespace; double and single quotes group, backslash escapes (not inside single quotes).</summary>
    internal static List<string> Words(string text)
    {
        var words = new List<string>();
        var current = new StringBuilder();
        var inWord = false;
        char quote = '\0';
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (quote == '\0' && char.IsWhiteSpace(c))
            {
                if (inWord) words.Add(current.ToString());
                current.Clear();
                inWord = false;
                continue;
            }
            inWord = true;
            if (quote == '\0' && c is '"' or '\'') quote = c;
            else if (c == quote) quote = '\0';
            else if (c == '\\' && quote != '\'' && i + 1 < text.Length) current.Append(text[++i]);
            else current.Append(c);
        }
        if (quote != '\0') throw new FormatException($"unexpected end of statement while looking for matching {quote}");
        if (inWord) words.Add(current.ToString());
        return words;
    }

    private static IEnumerable<string> ExpandPort(string spec)
    {
        var slash = spec.IndexOf('/');
        var proto = slash < 0 ? "tcp" : spec[(slash + 1)..].ToLowerInvariant();
        var range = slash < 0 ? spec : spec[..slash];
        if (proto is not ("tcp" or "udp" or "sctp")) throw new FormatException($"invalid proto: {proto}");
        var dash = range.IndexOf('-');
        var (lo, hi) = dash < 0 ? (ParsePort(range, spec), ParsePort(range, spec)) : (ParsePort(range[..dash], spec), ParsePort(range[(dash + 1)..], spec));
        if (hi < lo) throw new FormatException($"invalid range specified for containerPort: {range}");
        for (var p = lo; p <= hi; p++) yield return $"{p}/{proto}";
    }

    private static int ParsePort(string text, string spec) =>
        int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port) && port is > 0 and <= 65535
            ? port
            : throw new FormatException($"invalid containerPort: {spec}");

    private static bool IsSignal(string signal)
    {
        if (int.TryParse(signal, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n)) return n is > 0 and <= 64;
        var name = signal.ToUpperInvariant();
        if (name.StartsWith("SIG", StringComparison.Ordinal)) name = name[3..];
        if (SignalNames.Contains(name)) return true;
        // SIGRTMIN+3, RTMAX-1
        foreach (var rt in new[] { "RTMIN", "RTMAX" })
            if (name == rt || name.StartsWith(rt, StringComparison.Ordinal) && name.Length > rt.Length && name[rt.Length] is '+' or '-' &&
                int.TryParse(name[(rt.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture, out _))
                return true;
        return false;
    }

    private static string CleanPath(string path) => "/" + (ArchivePath.Normalize(path.TrimStart('/')) ?? "");
}
