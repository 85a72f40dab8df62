using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http;

namespace Flotilla.Gateway.Http;

/// <summary>
/// JSON responses with <c>Content-Type: application/json</c> exactly: the Docker Go client compares
/// the header literally, and ASP.NET's default adds <c>; charset=utf-8</c>.
/// </summary>
public static class JsonReply
{
    public const string ContentType = "application/json";

    /// <summary>Docker's PascalCase names, as declared on the DTOs.</summary>
    public static readonly JsonSerializerOptions Docker = new()
    {
        // As Go's encoder: '+' (media types, time offsets) stays '+'. Go's time.Time reads a string's raw bytes,
        // so an escaped "\u002B00:00" is not a time to it.
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        PropertyNamingPolicy = null,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    /// <summary>camelCase for Flotilla's own native API.</summary>
    public static readonly JsonSerializerOptions Native = new(JsonSerializerDefaults.Web)
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Converters = { new JsonStringEnumConverter() },
    };

    public static async Task WriteAsync<T>(HttpContext context, T body, int status = StatusCodes.Status200OK,
        JsonSerializerOptions? options = null)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = ContentType;
        await JsonSerializer.SerializeAsync(context.Response.Body, body, options ?? Docker, context.RequestAborted);
    }

    /// <summary>Docker's error shape: <c>{"message": "..."}</c>.</summary>
    public static Task ErrorAsync(HttpContext context, int status, string message) =>
        WriteAsync(context, new DockerError(message), status);
}

public sealed record DockerError(
    [property: JsonPropertyName("message")] string Message);
