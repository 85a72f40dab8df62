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

    public static Option<string> Http() =>
        WithEnv("--http", "FLOTILLA_HTTP", "127.0.0.1:8080", "native API address");

    private static string? Env(string name) =>
        Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : null;
}
