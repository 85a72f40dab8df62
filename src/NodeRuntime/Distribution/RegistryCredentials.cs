namespace Flotilla.NodeRuntime.Distribution;

/// <summary>
/// What a client gave to authenticate at a registry (Docker's <c>AuthConfig</c>): a user and password, or an
/// identity (refresh) token, or a ready registry bearer token.
/// </summary>
public sealed record RegistryCredentials(string? Username, string? Password, string? IdentityToken = null, string? RegistryToken = null,
    string? ServerAddress = null)
{
    public bool HasBasic => !string.IsNullOrEmpty(Username) && Password is not null;

    public bool IsEmpty => !HasBasic && string.IsNullOrEmpty(IdentityToken) && string.IsNullOrEmpty(RegistryToken);

    public string BasicHeaderValue =>
        Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes($"{Username}:{Password}"));

    // Never print the secrets.
    public override string ToString() => $"RegistryCredentials {{ Username = {Username}, ServerAddress = {ServerAddress} }}";
}

/// <summary>
/// A registry refused or failed a request. <see cref="Status"/> is the HTTP status the Docker API answers
/// with (404 for unknown manifests, 401 for refused credentials, 500 otherwise); the message is the
/// registry's, in dockerd's wording (<c>manifest unknown: manifest unknown</c>).
/// </summary>
public sealed class RegistryException(int status, string message, string? code = null, Exception? inner = null) : Exception(message, inner)
{
    public int Status { get; } = status;

    /// <summary>The registry's error code (<c>MANIFEST_UNKNOWN</c>), when it sent one.</summary>
    public string? Code { get; } = code;
}
