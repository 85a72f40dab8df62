namespace Flotilla.Gateway.Http;

/// <summary>
/// The <c>X-Request-Id</c> a client sends. Flotilla makes its own correlation ids (a client that chose them could
/// write its requests into another caller's story, or hide its own); a client's id is recorded as the causation id
/// of what its request did, so it can still be found. Only a short id of safe characters is kept.
/// </summary>
public static class ClientRequestId
{
    public const string Header = "X-Request-Id";

    public const int MaxLength = 128;

    /// <summary>The client's id when it is 1…128 characters of letters, digits and <c>-_.:</c>; otherwise none.</summary>
    public static string? Parse(string? value) =>
        value is { Length: > 0 and <= MaxLength } && value.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or ':') ? value : null;
}
