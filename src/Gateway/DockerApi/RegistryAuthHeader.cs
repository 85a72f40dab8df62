using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Flotilla.NodeRuntime.Distribution;

namespace Flotilla.Gateway.DockerApi;

/// <summary>
/// The <c>X-Registry-Auth</c> header: base64url (padded or not) JSON of Docker's <c>AuthConfig</c>
/// (<c>username, password, auth, serveraddress, identitytoken, registrytoken</c>). The CLI sends <c>e30=</c>
/// (<c>{}</c>) when it has no credentials. Malformed input is a <see cref="FormatException"/> (400), as in dockerd.
/// </summary>
public static class RegistryAuthHeader
{
    public const string Name = "X-Registry-Auth";

    /// <summary>The credentials, or null when the header is absent or carries none.</summary>
    public static RegistryCredentials? Decode(string? header)
    {
        if (string.IsNullOrWhiteSpace(header)) return null;
        if (header.Length > 64 << 10) throw new FormatException("invalid X-Registry-Auth header: too long");
        byte[] json;
        try
        {
            var text = header.Trim().Replace('-', '+').Replace('_', '/');
            text = text.TrimEnd('=');
            text += (text.Length % 4) switch { 2 => "==", 3 => "=", 0 => "", _ => throw new FormatException("bad length") };
            json = Convert.FromBase64String(text);
        }
        catch (FormatException)
        {
            throw new FormatException("invalid X-Registry-Auth header: illegal base64 data");
        }
        return FromJson(json, "X-Registry-Auth header");
    }

    /// <summary>An <c>AuthConfig</c> JSON document (also the body of <c>POST /auth</c>).</summary>
    public static RegistryCredentials? FromJson(ReadOnlySpan<byte> json, string what)
    {
        AuthConfig? config;
        try
        {
            config = JsonSerializer.Deserialize<AuthConfig>(json, Options);
        }
        catch (JsonException ex)
        {
            throw new FormatException($"invalid {what}: {ex.Message}");
        }
        if (config is null) return null;
        var (username, password) = (config.Username, config.Password);
        // "auth" is base64(user:password), the form stored in config.json.
        if (string.IsNullOrEmpty(username) && !string.IsNullOrEmpty(config.Auth))
        {
            string decoded;
            try
            {
                decoded = Encoding.UTF8.GetString(Convert.FromBase64String(config.Auth));
            }
            catch (FormatException)
            {
                throw new FormatException($"invalid {what}: auth is not base64");
            }
            var colon = decoded.IndexOf(':');
            if (colon < 0) throw new FormatException($"invalid {what}: auth is not user:password");
            (username, password) = (decoded[..colon], decoded[(colon + 1)..]);
        }
        var credentials = new RegistryCredentials(NullIfEmpty(username), password, NullIfEmpty(config.IdentityToken),
            NullIfEmpty(config.RegistryToken), NullIfEmpty(config.ServerAddress));
        return credentials.IsEmpty && credentials.ServerAddress is null ? null : credentials;
    }

    private static string? NullIfEmpty(string? s) => string.IsNullOrEmpty(s) ? null : s;

    private static readonly JsonSerializerOptions Options = new() { PropertyNameCaseInsensitive = true, MaxDepth = 8 };

    private sealed record AuthConfig
    {
        [JsonPropertyName("username")] public string? Username { get; init; }
        [JsonPropertyName("password")] public string? Password { get; init; }
        [JsonPropertyName("auth")] public string? Auth { get; init; }
        [JsonPropertyName("email")] public string? Email { get; init; }
        [JsonPropertyName("serveraddress")] public string? ServerAddress { get; init; }
        [JsonPropertyName("identitytoken")] public string? IdentityToken { get; init; }
        [JsonPropertyName("registrytoken")] public string? RegistryToken { get; init; }
    }
}
