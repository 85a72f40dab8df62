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
        app.MapGet("/token", async (HttpContext context, RegistryAuthPolicy policy, RegistryTokenSource tokens, RegistryUserService users, TokenThrottle throttle) =>
        {
            var credentials = BasicCredentials(context.Request.Headers.Authorization.ToString());
            var scopes = context.Request.Query["scope"].SelectMany(s => (s ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries));
            await IssueAsync(context, policy, tokens, users, throttle, credentials, scopes);
        });
        app.MapPost("/token", async (HttpContext context, RegistryAuthPolicy policy, RegistryTokenSource tokens, RegistryUserService users, TokenThrottle throttle) =>
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
            await IssueAsync(context, policy, tokens, users, throttle, (form["username"].ToString(), form["password"].ToString()), scopes);
        });
    }

    /// <summary>Most scopes one token request may ask for; docker asks for one or two, a push with mounts a few more.</summary>
    public const int MaxScopes = 64;
    /// <summary>Longest scope text: a repository name is at most 255 characters.</summary>
    public const int MaxScopeLength = 300;
    private const int MaxUserLength = 64;
    private const int MaxPasswordLength = 1024;

    private static async Task IssueAsync(HttpContext context, RegistryAuthPolicy policy, RegistryTokenSource tokens, RegistryUserService users,
        TokenThrottle throttle, (string User, string Password)? credentials, IEnumerable<string> scopeTexts)
    {
        var cancellationToken = context.RequestAborted;
        var remote = context.Connection.RemoteIpAddress?.ToString();
        var now = DateTimeOffset.UtcNow;
        var asked = credentials?.User is { Length: > 0 } named ? named : Anonymous;
        if (asked.Length > MaxUserLength) asked = asked[..MaxUserLength];

        if (!throttle.TryRequest(new TokenCaller(remote ?? "", asked), out var retryAfter))
        {
            await RefuseAsync(context, throttle.RecordThrottled(remote ?? "", asked) ? users : null, asked, "token", "too many token requests",
                StatusCodes.Status429TooManyRequests, RegistryErrorCodes.TooManyRequests, retryAfter);
            return;
        }

        var texts = scopeTexts.Take(MaxScopes + 1).ToList();
        if (texts.Count > MaxScopes)
        {
            await RefuseAsync(context, users, asked, "token", $"more than {MaxScopes} scopes in one request", StatusCodes.Status400BadRequest,
                RegistryErrorCodes.Denied, null);
            return;
        }
        var requested = new List<RegistryScope>();
        foreach (var text in texts)
        {
            if (text.Length > MaxScopeLength || !RegistryScope.TryParse(text, out var scope))
            {
                await OAuthErrorAsync(context, "invalid_scope", $"invalid scope '{(text.Length > MaxScopeLength ? text[..MaxScopeLength] + "…" : text)}'");
                return;
            }
            requested.Add(scope);
        }

        RegistryUserView? user = null;
        if (credentials is { } c)
        {
            if (throttle.LoginsBlocked(asked))
            {
                await RefuseAsync(context, throttle.RecordThrottled(remote ?? "", asked) ? users : null, asked, "token", "too many failed logins", StatusCodes.Status429TooManyRequests,
                    RegistryErrorCodes.TooManyRequests, null);
                return;
            }
            using (var turn = await throttle.HashingTurnAsync(cancellationToken))
            {
                if (!turn.IsAcquired)
                {
                    await RefuseAsync(context, throttle.RecordThrottled(remote ?? "", asked) ? users : null, asked, "token", "too many logins at once",
                        StatusCodes.Status429TooManyRequests, RegistryErrorCodes.TooManyRequests, null);
                    return;
                }
                user = c.User.Length > MaxUserLength || c.Password.Length > MaxPasswordLength ? null
                    : await users.AuthenticateAsync(c.User, c.Password, cancellationToken);
            }
            if (user is null)
            {
                throttle.LoginFailed(asked);
                await users.RecordDenialAsync(new RegistryAccessDenied(asked, "token", [], "invalid username or password", remote, now),
                    Origin(context, asked), cancellationToken);
                context.Response.Headers.WWWAuthenticate = $"Basic realm=\"{tokens.Service}\"";
                await JsonReply.WriteAsync(context, new RegistryAuthFailure([new("UNAUTHORIZED", "invalid username or password")]),
                    StatusCodes.Status401Unauthorized);
                return;
            }
        }

        var open = await policy.IsOpenAsync(cancellationToken);
        var granted = new List<RegistryScope>();
        var refused = new List<DeniedScope>();
        foreach (var scope in requested)
        {
            var grant = policy.Grant(scope, user, open);
            if (grant is not null) granted.Add(grant);
            var notGranted = scope.Actions.Except(grant?.Actions ?? []).ToList();
            if (notGranted.Count > 0) refused.Add(new DeniedScope($"{scope.Type}:{scope.Name}", notGranted));
        }
        // One event per request, however many scopes it was refused.
        if (refused.Count > 0)
            await users.RecordDenialAsync(new RegistryScopesDenied(user?.Name ?? Anonymous, refused,
                user is null ? "authentication required" : "not permitted", remote, now), Origin(context, user?.Name), cancellationToken);

        var token = (await tokens.GetAsync(cancellationToken)).Issue(user?.Name ?? "", granted, now);
        context.Response.Headers.CacheControl = "no-store";
        await JsonReply.WriteAsync(context, new TokenResponse(token, token, (int)tokens.Lifetime.TotalSeconds,
            // RFC 3339 in UTC: Go clients parse this field's raw bytes, so no offset that JSON could escape.
            now.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", System.Globalization.CultureInfo.InvariantCulture)));
    }

    private const string Anonymous = TokenCaller.Anonymous;

    /// <summary>A refusal of the whole request in the registry's error shape; recorded unless <paramref name="users"/> is null.</summary>
    private static async Task RefuseAsync(HttpContext context, RegistryUserService? users, string user, string resource, string reason,
        int status, string code, TimeSpan? retryAfter)
    {
        if (users is not null)
            await users.RecordDenialAsync(new RegistryAccessDenied(user, resource, [], reason, context.Connection.RemoteIpAddress?.ToString(),
                DateTimeOffset.UtcNow), Origin(context, user), context.RequestAborted);
        if (retryAfter is { } after) context.Response.Headers.RetryAfter = ((int)Math.Ceiling(after.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
        await RegistryErrors.WriteAsync(context, code, reason, null, status);
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
