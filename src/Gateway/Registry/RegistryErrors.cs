using System.Text.Json;
using System.Text.Json.Serialization;
using Flotilla.Contracts.Registry;
using Microsoft.AspNetCore.Http;

namespace Flotilla.Gateway.Registry;

/// <summary>The distribution spec's error body, <c>{"errors":[{"code","message","detail"}]}</c>, with distribution's statuses.</summary>
public static class RegistryErrors
{
    public static int StatusOf(string code) => code switch
    {
        RegistryErrorCodes.BlobUnknown => StatusCodes.Status404NotFound,
        RegistryErrorCodes.BlobUploadInvalid => StatusCodes.Status400BadRequest,
        RegistryErrorCodes.BlobUploadUnknown => StatusCodes.Status404NotFound,
        RegistryErrorCodes.DigestInvalid => StatusCodes.Status400BadRequest,
        RegistryErrorCodes.ManifestBlobUnknown => StatusCodes.Status400BadRequest,
        RegistryErrorCodes.ManifestInvalid => StatusCodes.Status400BadRequest,
        RegistryErrorCodes.ManifestUnknown => StatusCodes.Status404NotFound,
        RegistryErrorCodes.NameInvalid => StatusCodes.Status400BadRequest,
        RegistryErrorCodes.NameUnknown => StatusCodes.Status404NotFound,
        RegistryErrorCodes.SizeInvalid => StatusCodes.Status400BadRequest,
        RegistryErrorCodes.Unauthorized => StatusCodes.Status401Unauthorized,
        RegistryErrorCodes.Denied => StatusCodes.Status403Forbidden,
        RegistryErrorCodes.Unsupported => StatusCodes.Status405MethodNotAllowed,
        RegistryErrorCodes.TooManyRequests => StatusCodes.Status429TooManyRequests,
        RegistryErrorCodes.RangeInvalid => StatusCodes.Status416RangeNotSatisfiable,
        RegistryErrorCodes.PaginationNumberInvalid => StatusCodes.Status400BadRequest,
        RegistryErrorCodes.TagInvalid => StatusCodes.Status400BadRequest,
        RegistryErrorCodes.Unavailable => StatusCodes.Status503ServiceUnavailable,
        _ => StatusCodes.Status500InternalServerError,
    };

    public static Task WriteAsync(HttpContext context, string code, string message, object? detail = null, int? status = null)
    {
        context.Response.StatusCode = status ?? StatusOf(code);
        context.Response.ContentType = "application/json";
        var body = new ErrorBody([new ErrorItem(code, message, detail)]);
        var bytes = JsonSerializer.SerializeToUtf8Bytes(body, Json);
        context.Response.ContentLength = bytes.Length;
        return context.Request.Method == HttpMethods.Head ? Task.CompletedTask : context.Response.Body.WriteAsync(bytes).AsTask();
    }

    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    private sealed record ErrorBody(IReadOnlyList<ErrorItem> Errors);

    private sealed record ErrorItem(string Code, string Message, object? Detail);
}
