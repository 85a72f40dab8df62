using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http;

namespace Flotilla.Gateway.Http;

/// <summary>
/// Docker's JSON message stream (pull, push, import, load, build): one object per line, flushed as
/// written. Once the first line is out, errors travel in-band as <c>errorDetail</c>.
/// </summary>
public sealed class JsonMessageStream(HttpResponse response)
{
    private static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = null,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public bool Started => response.HasStarted;

    public async Task StartAsync()
    {
        if (response.HasStarted) return;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = JsonReply.ContentType;
        await response.StartAsync();
        await response.Body.FlushAsync();
    }

    public Task StatusAsync(string status, string? id = null, ProgressDetail? detail = null, string? progress = null) =>
        WriteAsync(new JsonMessage { Status = status, Id = id, ProgressDetail = detail, Progress = progress });

    public Task StreamAsync(string text) => WriteAsync(new JsonMessage { Stream = text });

    /// <summary>Out-of-band data; push results carry an empty <c>progressDetail</c> as dockerd writes them.</summary>
    public Task AuxAsync(object aux, ProgressDetail? detail = null) => WriteAsync(new JsonMessage { ProgressDetail = detail, Aux = aux });

    public Task ErrorAsync(string message, int? code = null) =>
        WriteAsync(new JsonMessage { Error = message, ErrorDetail = new ErrorDetail(code, message) });

    private async Task WriteAsync(JsonMessage message)
    {
        await StartAsync();
        var bytes = JsonSerializer.SerializeToUtf8Bytes(message, Options);
        await response.Body.WriteAsync(bytes);
        await response.Body.WriteAsync("\r\n"u8.ToArray());
        await response.Body.FlushAsync();
    }

    private sealed record JsonMessage
    {
        [JsonPropertyName("stream")] public string? Stream { get; init; }
        [JsonPropertyName("status")] public string? Status { get; init; }
        [JsonPropertyName("id")] public string? Id { get; init; }
        [JsonPropertyName("progressDetail")] public ProgressDetail? ProgressDetail { get; init; }
        [JsonPropertyName("progress")] public string? Progress { get; init; }
        [JsonPropertyName("errorDetail")] public ErrorDetail? ErrorDetail { get; init; }
        [JsonPropertyName("error")] public string? Error { get; init; }
        [JsonPropertyName("aux")] public object? Aux { get; init; }
    }
}

public sealed record ProgressDetail([property: JsonPropertyName("current")] long? Current, [property: JsonPropertyName("total")] long? Total);

public sealed record ErrorDetail([property: JsonPropertyName("code")] int? Code, [property: JsonPropertyName("message")] string Message);
