using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;

namespace Flotilla.Cli.Hosting;

/// <summary>
/// The console of a Flotilla process (<c>--log-level</c>): warnings and errors by default, one line each; more detail
/// (Akka's own lines, handled conflicts, stack traces) from <c>information</c>/<c>debug</c> on.
/// </summary>
public static partial class ConsoleLogging
{
    public const string Names = "trace, debug, information, warning or error";

    /// <summary>The level a user names; anything else is a usage error that says what is accepted.</summary>
    public static LogLevel Parse(string value) => value.Trim().ToLowerInvariant() switch
    {
        "trace" => LogLevel.Trace,
        "debug" => LogLevel.Debug,
        "information" or "info" => LogLevel.Information,
        "warning" or "warn" => LogLevel.Warning,
        "error" => LogLevel.Error,
        _ => throw new ArgumentException($"--log-level must be {Names}, not '{value}'"),
    };

    public static ILoggingBuilder UseFlotillaConsole(this ILoggingBuilder builder, LogLevel level)
    {
        builder.ClearProviders();
        builder.AddConsole(o => o.FormatterName = OneLineFormatter.Name);
        builder.AddConsoleFormatter<OneLineFormatter, OneLineOptions>(o => o.FullExceptions = level <= LogLevel.Debug);
        builder.SetMinimumLevel(level);
        // Libraries' own chatter (every request, every command) only when everything is asked for.
        var libraries = level <= LogLevel.Trace ? LogLevel.Trace : (LogLevel)Math.Max((int)level, (int)LogLevel.Warning);
        foreach (var category in new[] { "Microsoft", "Marten", "Npgsql", "JasperFx", "Weasel" }) builder.AddFilter(category, libraries);
        return builder;
    }

    public static ILoggerFactory Factory(LogLevel level) => LoggerFactory.Create(b => b.UseFlotillaConsole(level));

    public sealed class OneLineOptions : ConsoleFormatterOptions
    {
        /// <summary>Stack traces and every line of a message; otherwise the first line and the exception's message.</summary>
        public bool FullExceptions { get; set; }
    }

    /// <summary><c>warn: source: message</c>, one line unless the level asks for detail.</summary>
    private sealed partial class OneLineFormatter(IOptionsMonitor<OneLineOptions> options) : ConsoleFormatter(Name)
    {
        public new const string Name = "flotilla";

        public override void Write<TState>(in LogEntry<TState> logEntry, Microsoft.Extensions.Logging.IExternalScopeProvider? scopeProvider, TextWriter textWriter)
        {
            var message = logEntry.Formatter?.Invoke(logEntry.State, logEntry.Exception) ?? "";
            var full = options.CurrentValue.FullExceptions;
            var category = logEntry.Category;
            if (category == "Akka.Actor.ActorSystem")
            {
                // Akka's bridge hands over its own formatted line: "[LEVEL][time][Thread n][source] text".
                category = "akka";
                message = AkkaPrefix().Replace(message, m => m.Groups[1].Value + ": ", 1);
            }
            if (!full && message.IndexOf('\n') is var newline and >= 0) message = message[..newline].TrimEnd('\r');
            textWriter.Write(Level(logEntry.LogLevel));
            textWriter.Write(": ");
            textWriter.Write(category);
            textWriter.Write(": ");
            textWriter.Write(message);
            if (logEntry.Exception is { } ex)
            {
                if (full) textWriter.Write(Environment.NewLine + ex);
                else textWriter.Write($" ({ex.GetType().Name}: {FirstLine(ex.Message)})");
            }
            textWriter.Write(Environment.NewLine);
        }

        private static string FirstLine(string text) => text.IndexOf('\n') is var i and >= 0 ? text[..i].TrimEnd('\r') : text;

        private static string Level(LogLevel level) => level switch
        {
            LogLevel.Trace => "trce",
            LogLevel.Debug => "dbug",
            LogLevel.Information => "info",
            LogLevel.Warning => "warn",
            LogLevel.Error => "fail",
            LogLevel.Critical => "crit",
            _ => "    ",
        };

        [System.Text.RegularExpressions.GeneratedRegex(@"^\[[A-Z]+\]\[[^\]]*\]\[Thread \d+\]\[([^\]]*)\] ?")]
        private static partial System.Text.RegularExpressions.Regex AkkaPrefix();
    }
}
