using System.Security.Claims;
using System.Text.Json.Serialization;
using Flotilla.Gateway.Http;
using Microsoft.AspNetCore.Http;

namespace Flotilla.Gateway.Registry.Auth;

/// <summary>
/// First stop of every registry request: works out the scope the request needs (<see cref="RegistryRoutes"/>),
/// checks the bearer token against it, and answers 401 with the token challenge when it falls short. On success
/// <c>HttpContext.User</c> names the token's subject (unauthenticated for anonymous), which the endpoints record.
/// </summary>
public sealed class RegistryAuthMiddleware(RequestDelegate next, RegistryAuthPolicy policy, RegistryTokenSource tokens)
{
    public async Task InvokeAsync(HttpContext context)
    {
        var need = RegistryRoutes.For(context.Request.Method, context.Request.Path.Value ?? "/");
        if (need.Anonymous || await policy.IsOpenAsync(context.RequestAborted))
        {
            await next(context);
            return;
        }

        GrantedAccess? granted = null;
        var header = context.Request.Headers.Authorization.ToString();
        if (header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            granted = await (await tokens.GetAsync(context.RequestAborted)).ValidateAsync(header["Bearer ".Length..].Trim());

        if (granted is not null && (need.Scope is null || granted.Allows(need.Scope)))
        {
            if (granted.Subject.Length > 0)
                context.User = new ClaimsPrincipal(new ClaimsIdentity([new Claim(ClaimTypes.Name, granted.Subject)], "Bearer"));
            await next(context);
            return;
        }
        await ChallengeAsync(context, tokens.Service, need.Scope, insufficient: granted is not null);
    }

    public static async Task ChallengeAsync(HttpContext context, string service, RegistryScope? scope, bool insufficient)
    {
        var realm = $"{context.Request.Scheme}://{context.Request.Host}/token";
        var challenge = $"Bearer realm=\"{realm}\",service=\"{service}\"";
        if (scope is not null) challenge += $",scope=\"{scope}\"";
        if (insufficient) challenge += ",error=\"insufficient_scope\"";
        context.Response.Headers.WWWAuthenticate = challenge;
        context.Response.Headers["Docker-Distribution-API-Version"] = "registry/2.0";
        var detail = scope?.Actions.Select(a => new ScopeDetail(scope.Type, scope.Name, a)).ToList();
        await JsonReply.WriteAsync(context, new AuthErrors([new AuthError("UNAUTHORIZED", "authentication required", detail)]),
            StatusCodes.Status401Unauthorized);
    }

    private sealed record AuthErrors([property: JsonPropertyName("errors")] IReadOnlyList<AuthError> Errors);

    private sealed record AuthError(
        [property: JsonPropertyName("code")] string Code,
        [property: JsonPropertyName("message")] string Message,
        [property: JsonPropertyName("detail"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] object? Detail);

    private sealed record ScopeDetail(string Type, string Name, string Action);
}
