using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;
using MessagePack;
using MessagePack.Formatters;

namespace Flotilla.Contracts.Containers;

/// <summary>What the runtime last reported of a container's process (Docker's words are made by the gateway).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ContainerStatus>))]
[MessagePackFormatter(typeof(StoredWordFormatter<ContainerStatus>))]
public enum ContainerStatus { Created, Running, Paused, Restarting, Exited, Removing, Dead }

/// <summary>
/// When the container is restarted after its process exits. The member words are how the policy is stored in
/// events already written (<c>ContainerCreated.Definition.RestartPolicy.Name</c>): they must not change.
/// </summary>
[JsonConverter(typeof(JsonStringEnumConverter<RestartPolicyName>))]
[MessagePackFormatter(typeof(StoredWordFormatter<RestartPolicyName>))]
public enum RestartPolicyName
{
    [JsonStringEnumMemberName("no")] No,
    [JsonStringEnumMemberName("always")] Always,
    [JsonStringEnumMemberName("on-failure")] OnFailure,
    [JsonStringEnumMemberName("unless-stopped")] UnlessStopped,
}

/// <summary>What a wait waits for: the process not running, its next exit, or the container's removal.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<WaitCondition>))]
[MessagePackFormatter(typeof(StoredWordFormatter<WaitCondition>))]
public enum WaitCondition { NotRunning, NextExit, Removed }

/// <summary>
/// The word an enum value is stored as (JSON and the wire): its <see cref="JsonStringEnumMemberNameAttribute"/>, else
/// its name. Reading takes either, in any case.
/// </summary>
public static class StoredWords<T> where T : struct, Enum
{
    private static readonly Dictionary<T, string> Words = Enum.GetValues<T>().ToDictionary(v => v,
        v => typeof(T).GetField(v.ToString())!.GetCustomAttribute<JsonStringEnumMemberNameAttribute>()?.Name ?? v.ToString());

    private static readonly Dictionary<string, T> Values = Words.SelectMany(w => new[] { (w.Value, w.Key), (w.Key.ToString(), w.Key) })
        .DistinctBy(w => w.Item1, StringComparer.OrdinalIgnoreCase).ToDictionary(w => w.Item1, w => w.Item2, StringComparer.OrdinalIgnoreCase);

    public static string Of(T value) => Words.TryGetValue(value, out var word) ? word : value.ToString();

    public static bool TryParse(string? word, out T value) => Values.TryGetValue(word ?? "", out value);

    public static T Parse(string word) =>
        TryParse(word, out var value) ? value : throw new FormatException($"'{word}' is not a {typeof(T).Name}");
}

/// <summary>An enum on the wire as its stored word (a string, as these values were before they were typed).</summary>
public sealed class StoredWordFormatter<T> : IMessagePackFormatter<T> where T : struct, Enum
{
    public void Serialize(ref MessagePackWriter writer, T value, MessagePackSerializerOptions options) => writer.Write(StoredWords<T>.Of(value));

    public T Deserialize(ref MessagePackReader reader, MessagePackSerializerOptions options) =>
        StoredWords<T>.TryParse(reader.ReadString(), out var value) ? value : throw new MessagePackSerializationException($"not a {typeof(T).Name}");
}

/// <summary>
/// A Linux signal, by number. Parsed from the forms Docker accepts (<c>KILL</c>, <c>SIGKILL</c>, <c>9</c>,
/// <c>RTMIN+3</c>); stored and sent as its name without <c>SIG</c> (<c>KILL</c>), which is also what the runtime takes.
/// </summary>
[JsonConverter(typeof(SignalJsonConverter))]
[MessagePackFormatter(typeof(SignalFormatter))]
public readonly record struct Signal
{
    private const int RtMin = 34, RtMax = 64;

    private static readonly string[] Names =
    [
        "", "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2", "PIPE", "ALRM", "TERM",
        "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
    ];

    public static readonly Signal Hup = new(1), Int = new(2), Quit = new(3), Kill = new(9), Term = new(15);

    private Signal(int number) => Number = number;

    public int Number { get; }

    /// <summary><c>KILL</c>, <c>RTMIN+3</c>; a number for one without a name.</summary>
    public string Name => Number switch
    {
        > 0 and < 32 => Names[Number],
        RtMin => "RTMIN",
        > RtMin and < RtMax => $"RTMIN+{Number - RtMin}",
        RtMax => "RTMAX",
        _ => Number.ToString(CultureInfo.InvariantCulture),
    };

    public override string ToString() => Name;

    public static bool TryParse(string? text, out Signal signal)
    {
        signal = default;
        var name = (text ?? "").Trim().ToUpperInvariant();
        if (name.StartsWith("SIG", StringComparison.Ordinal)) name = name[3..];
        if (int.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out var number))
        {
            if (number is < 1 or > RtMax) return false;
            signal = new Signal(number);
            return true;
        }
        var index = Array.IndexOf(Names, name);
        if (index > 0) number = index;
        else if (name == "IOT") number = 6;
        else if (name == "POLL") number = 29;
        else if (name == "RTMIN") number = RtMin;
        else if (name == "RTMAX") number = RtMax;
        else if (name.StartsWith("RTMIN+", StringComparison.Ordinal) && int.TryParse(name[6..], NumberStyles.None, CultureInfo.InvariantCulture, out var plus)
                 && RtMin + plus <= RtMax) number = RtMin + plus;
        else if (name.StartsWith("RTMAX-", StringComparison.Ordinal) && int.TryParse(name[6..], NumberStyles.None, CultureInfo.InvariantCulture, out var minus)
                 && RtMax - minus >= RtMin) number = RtMax - minus;
        else return false;
        signal = new Signal(number);
        return true;
    }

    /// <summary>The signal <paramref name="text"/> names; Docker's error when it names none.</summary>
    public static Signal Parse(string text) => TryParse(text, out var signal) ? signal : throw new FormatException($"Invalid signal: {text}");
}

/// <summary>A signal in JSON: its name. Reads every form events were stored with (<c>SIGKILL</c>, <c>9</c>).</summary>
public sealed class SignalJsonConverter : JsonConverter<Signal>
{
    public override Signal Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        var text = reader.TokenType == JsonTokenType.Number ? reader.GetInt32().ToString(CultureInfo.InvariantCulture) : reader.GetString();
        return Signal.TryParse(text, out var signal) ? signal : throw new JsonException($"Invalid signal: {text}");
    }

    public override void Write(Utf8JsonWriter writer, Signal value, JsonSerializerOptions options) => writer.WriteStringValue(value.Name);
}

/// <summary>A signal on the wire: its name, a string as before it was typed.</summary>
public sealed class SignalFormatter : IMessagePackFormatter<Signal>
{
    public void Serialize(ref MessagePackWriter writer, Signal value, MessagePackSerializerOptions options) => writer.Write(value.Name);

    public Signal Deserialize(ref MessagePackReader reader, MessagePackSerializerOptions options) =>
        Signal.TryParse(reader.ReadString(), out var signal) ? signal : throw new MessagePackSerializationException("invalid signal");
}
