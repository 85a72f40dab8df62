using System.CommandLine;

namespace Flotilla.Cli.Commands;

/// <summary>Options whose default comes from an environment variable, then a fixed value.</summary>
public static class Flags
{
    public static Option<string> WithEnv(string name, string env, string fallback, string description) => new(name)
    {
        Description = $"{description} [env {env}, default {fallback}]",
        DefaultValueFactory = _ => Env(env) ?? fallback,
    };

    public static Option<string?> OptionalWithEnv(string name, string env, string description) => new(name)
    {
        Description = $"{description} [env {env}]",
        DefaultValueFactory = _ => Env(env),
    };

    /// <summary>A flag that may be repeated; its environment variable holds the values comma-separated.</summary>
    public static Option<string[]> RepeatableWithEnv(string name, string env, string description) => new(name)
    {
        Description = $"{description} [repeatable; env {env}, comma-separated]",
        AllowMultipleArgumentsPerToken = false,
        DefaultValueFactory = _ => Env(env)?.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries) ?? [],
    };

    /// <summary><c>--log-level</c>: what the console shows besides the ready banner (parse with <see cref="Hosting.ConsoleLogging.Parse"/>).</summary>
    public static Option<string> LogLevel() =>
        WithEnv("--log-level", "FLOTILLA_LOG_LEVEL", "warning", $"console detail: {Hosting.ConsoleLogging.Names}");

    public static Option<string[]> InsecureRegistry()
    {
        var option = RepeatableWithEnv("--insecure-registry", "FLOTILLA_INSECURE_REGISTRIES",
            "registry HOST[:PORT] or CIDR the engine may reach over plain HTTP or unverified TLS (loopback always may)");
        // A bad value is a usage error, reported like any other before the process starts (not a host start-up failure).
        option.Validators.Add(result =>
        {
            try
            {
                NodeRuntime.Distribution.InsecureRegistries.Parse(result.GetValueOrDefault<string[]>() ?? []);
            }
            catch (FormatException ex)
            {
                result.AddError($"--insecure-registry: {ex.Message}");
            }
        });
        return option;
    }

    public static Option<string?> PostgresFile() =>
        OptionalWithEnv("--postgres-file", "FLOTILLA_POSTGRES_FILE",
            "file holding the PostgreSQL connection string (keeps a password out of `ps`; FLOTILLA_POSTGRES does too)");

    /// <summary>The connection string from <c>--postgres</c> or the file <c>--postgres-file</c> names (not both), or null.</summary>
    public static string? Postgres(string? value, string? file)
    {
        if (file is null) return value;
        if (value is not null) throw new ArgumentException("give --postgres or --postgres-file, not both");
        try
        {
            var text = File.ReadAllText(file).Trim();
            return text.Length > 0 ? text : throw new ArgumentException($"--postgres-file: {file} is empty");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new ArgumentException($"--postgres-file: cannot read {file}: {ex.Message}", ex);
        }
    }

    public static Option<string> Http() =>
        WithEnv("--http", "FLOTILLA_HTTP", "127.0.0.1:8080", "native API address");

    private static string? Env(string name) =>
        Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : null;
}
