using System.Text;
using System.Text.Json.Serialization;
using Flotilla.Cluster.Registry;
using Flotilla.Contracts;
using Flotilla.Contracts.Registry;
using Flotilla.Gateway.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Flotilla.Gateway.Registry.Auth;

/// <summary>
/// The token realm (<c>GET /token?service=&amp;scope=…</c> with optional basic credentials, and the OAuth2 password
/// grant on <c>POST /token</c>): grants the intersection of what was asked and what the caller may do — a partial
/// grant is not an error, as in the distribution token spec. Bad credentials and refused actions are recorded.
/// </summary>
public static class TokenEndpoint
{
    public static void MapRegistryTokenEndpoint(this IEndpointRouteBuilder app)
    {
        app.MapGet("/token", async (HttpContext context, RegistryAuthPolicy policy, RegistryTokenSource tokens, RegistryUserService users) =>
        {
            var credentials = BasicCredentials(context.Request.Headers.Authorization.ToString());
            var scopes = context.Request.Query["scope"].SelectMany(s => (s ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries));
            await IssueAsync(context, policy, tokens, users, credentials, scopes);
        });
        app.MapPost("/token", async (HttpContext context, RegistryAuthPolicy policy, RegistryTokenSource tokens, RegistryUserService users) =>
        {
            if (!context.Request.HasFormContentType)
            {
                await OAuthErrorAsync(context, "invalid_request", "expected a form body");
                return;
            }
            var form = await context.Request.ReadFormAsync(context.RequestAborted);
            if (form["grant_type"] != "password")
            {
                // Flotilla never hands out refresh tokens, so the password grant is the only one it can honour.
                await OAuthErrorAsync(context, "unsupported_grant_type", "only grant_type=password is supported");
                return;
            }
            var scopes = form["scope"].SelectMany(s => (s ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries));
            await IssueAsync(context, policy, tokens, users, (form["username"].ToString(), form["password"].ToString()), scopes);
        });
    }

    private static async Task IssueAsync(HttpContext context, RegistryAuthPolicy policy, RegistryTokenSource tokens, RegistryUserService users,
        (string User, string Password)? credentials, IEnumerable<string> scopeTexts)
    {
        var cancellationToken = context.RequestAborted;
        var remote = context.Connection.RemoteIpAddress?.ToString();
        var now = DateTimeOffset.UtcNow;
        var requested = new List<RegistryScope>();
        foreach (var text in scopeTexts)
        {
            if (!RegistryScope.TryParse(text, out var scope))
            {
                await OAuthErrorAsync(context, "invalid_scope", $"invalid scope '{text}'");
                return;
            }
            requested.Add(scope);
        }

        RegistryUserView? user = null;
        if (credentials is { } c)
        {
            user = await users.AuthenticateAsync(c.User, c.Password, cancellationToken);
            if (user is null)
            {
                await users.RecordDenialAsync(new RegistryAccessDenied(c.User, "token", [], "invalid username or password", remote, now),
                    Origin(context, c.User), cancellationToken);
                context.Response.Headers.WWWAuthenticate = $"Basic realm=\"{tokens.Service}\"";
                await JsonReply.WriteAsync(context, new RegistryAuthFailure([new("UNAUTHORIZED", "invalid username or password")]),
                    StatusCodes.Status401Unauthorized);
                return;
            }
        }

        var open = await policy.IsOpenAsync(cancellationToken);
        var granted = new List<RegistryScope>();
        foreach (var scope in requested)
        {
            var grant = policy.Grant(scope, user, open);
            if (grant is not null) granted.Add(grant);
            var refused = scope.Actions.Except(grant?.Actions ?? []).ToList();
            if (refused.Count > 0)
                await users.RecordDenialAsync(new RegistryAccessDenied(user?.Name ?? "anonymous", $"{scope.Type}:{scope.Name}", refused,
                    user is null ? "authentication required" : "not permitted", remote, now), Origin(context, user?.Name), cancellationToken);
        }

        var token = (await tokens.GetAsync(cancellationToken)).Issue(user?.Name ?? "", granted, now);
        context.Response.Headers.CacheControl = "no-store";
        await JsonReply.WriteAsync(context, new TokenResponse(token, token, (int)tokens.Lifetime.TotalSeconds,
            // RFC 3339 in UTC: Go clients parse this field's raw bytes, so no offset that JSON could escape.
            now.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", System.Globalization.CultureInfo.InvariantCulture)));
    }

    private static RequestOrigin Origin(HttpContext context, string? user) =>
        new(string.IsNullOrEmpty(user) ? "anonymous" : user, context.TraceIdentifier);

    /// <summary><c>Basic base64(user:password)</c> → the pair; null when absent or malformed.</summary>
    public static (string User, string Password)? BasicCredentials(string header)
    {
        if (!header.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase)) return null;
        try
        {
            var decoded = Encoding.UTF8.GetString(Convert.FromBase64String(header["Basic ".Length..].Trim()));
            var colon = decoded.IndexOf(':');
            return colon <= 0 ? null : (decoded[..colon], decoded[(colon + 1)..]);
        }
        catch (FormatException)
        {
            return null;
        }
    }

    private static Task OAuthErrorAsync(HttpContext context, string error, string description) =>
        JsonReply.WriteAsync(context, new OAuthError(error, description), StatusCodes.Status400BadRequest);

    private sealed record TokenResponse(
        [property: JsonPropertyName("token")] string Token,
        [property: JsonPropertyName("access_token")] string AccessToken,
        [property: JsonPropertyName("expires_in")] int ExpiresIn,
        [property: JsonPropertyName("issued_at")] string IssuedAt);

    private sealed record OAuthError(
        [property: JsonPropertyName("error")] string Error,
        [property: JsonPropertyName("error_description")] string Description);

    private sealed record RegistryAuthFailure([property: JsonPropertyName("errors")] IReadOnlyList<RegistryAuthFailureEntry> Errors);

    private sealed record RegistryAuthFailureEntry(
        [property: JsonPropertyName("code")] string Code,
        [property: JsonPropertyName("message")] string Message);
}
