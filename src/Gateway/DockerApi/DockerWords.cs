using System.Text.Json;
using System.Text.Json.Serialization;
using Flotilla.Contracts.Containers;

namespace Flotilla.Gateway.DockerApi;

/// <summary>Docker's words for Flotilla's typed container values: the Docker API is the only place they are spoken.</summary>
public static class DockerWords
{
    public static string Of(ContainerStatus status) => status switch
    {
        ContainerStatus.Created => "created",
        ContainerStatus.Running => "running",
        ContainerStatus.Paused => "paused",
        ContainerStatus.Restarting => "restarting",
        ContainerStatus.Exited => "exited",
        ContainerStatus.Removing => "removing",
        ContainerStatus.Dead => "dead",
        _ => throw new ArgumentOutOfRangeException(nameof(status), status, null),
    };

    /// <summary>A <c>status=</c> filter's word.</summary>
    public static bool TryParseStatus(string word, out ContainerStatus status)
    {
        foreach (var candidate in Enum.GetValues<ContainerStatus>())
            if (Of(candidate) == word)
            {
                status = candidate;
                return true;
            }
        status = default;
        return false;
    }

    public static string Of(RestartPolicyName name) => name switch
    {
        RestartPolicyName.No => "no",
        RestartPolicyName.Always => "always",
        RestartPolicyName.OnFailure => "on-failure",
        RestartPolicyName.UnlessStopped => "unless-stopped",
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, null),
    };

    /// <summary>A restart policy's name as clients send it; an empty name is <c>no</c>.</summary>
    public static bool TryParseRestartPolicy(string word, out RestartPolicyName name)
    {
        name = RestartPolicyName.No;
        if (word.Length == 0) return true;
        foreach (var candidate in Enum.GetValues<RestartPolicyName>())
            if (Of(candidate) == word)
            {
                name = candidate;
                return true;
            }
        return false;
    }

    /// <summary><c>wait?condition=</c>: <c>not-running</c>, <c>next-exit</c>, <c>removed</c>.</summary>
    public static bool TryParseWaitCondition(string word, out WaitCondition condition)
    {
        (var known, condition) = word switch
        {
            "not-running" => (true, WaitCondition.NotRunning),
            "next-exit" => (true, WaitCondition.NextExit),
            "removed" => (true, WaitCondition.Removed),
            _ => (false, default),
        };
        return known;
    }

    /// <summary>A restart policy's name in a HostConfig's JSON, in Docker's words (an older version stored a client's "" verbatim).</summary>
    public sealed class RestartPolicyNameConverter : JsonConverter<RestartPolicyName>
    {
        public override RestartPolicyName Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
            TryParseRestartPolicy(reader.GetString() ?? "", out var name) ? name : throw new JsonException("unknown restart policy");

        public override void Write(Utf8JsonWriter writer, RestartPolicyName value, JsonSerializerOptions options) =>
            writer.WriteStringValue(Of(value));
    }
}
