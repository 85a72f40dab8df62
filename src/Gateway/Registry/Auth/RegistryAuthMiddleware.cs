using System.Security.Claims;
using System.Text.Json.Serialization;
using Flotilla.Cluster.Registry;
using Flotilla.Contracts;
using Flotilla.Contracts.Registry;
using Flotilla.Gateway.Http;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Flotilla.Gateway.Registry.Auth;

/// <summary>
/// First stop of every registry request: parses it once (<see cref="RegistryRequest"/>, which the dispatcher then
/// serves), refuses paths that do not parse, checks the bearer token against the access the request needs, and
/// answers 401 with the token challenge when it falls short. On success <c>HttpContext.User</c> names the token's
/// subject (unauthenticated for anonymous), which the endpoints record. Refusals are recorded in
/// <c>registry-access</c>, except the unauthenticated read that opens every client's token handshake.
/// </summary>
public sealed class RegistryAuthMiddleware(RequestDelegate next, RegistryAuthPolicy policy, RegistryTokenSource tokens, RegistryUserService users)
{
    public async Task InvokeAsync(HttpContext context)
    {
        var raw = context.Features.Get<IHttpRequestFeature>()?.RawTarget ?? context.Request.Path.Value ?? "/";
        var method = context.Request.Method;
        var parse = RegistryRequest.Parse(method, raw);
        if (parse.Refusal is { } refusal)
        {
            if (IsUnderV2(context, raw) || !IsRead(method))
            {
                var subject = (await ValidateAsync(context))?.Subject is { Length: > 0 } s ? s : Anonymous;
                await RecordAsync(context, subject, $"path:{Truncate(raw)}", [method], $"refused path: {refusal.Message}");
            }
            await RegistryErrors.WriteAsync(context, refusal.Code, refusal.Message, refusal.Detail, refusal.Status);
            return;
        }

        var request = parse.Request!;
        var need = request.Access;
        if (need.Anonymous)
        {
            context.Features.Set(request);
            await next(context);
            return;
        }
        if (await policy.IsOpenAsync(context.RequestAborted))
        {
            context.Features.Set(request with { MountSource = MountSourceOf(context, request) });
            await next(context);
            return;
        }

        var granted = await ValidateAsync(context);
        if (granted is not null && (need.Scope is null || granted.Allows(need.Scope)))
        {
            if (granted.Subject.Length > 0)
                context.User = new ClaimsPrincipal(new ClaimsIdentity([new Claim(ClaimTypes.Name, granted.Subject)], "Bearer"));
            context.Features.Set(request with { MountSource = await ReadableMountSourceAsync(context, request, granted) });
            await next(context);
            return;
        }
        // A client's first, token-less read is the protocol's handshake, not an attempt: not recorded.
        if (granted is not null || HasBearer(context) || !IsRead(method))
        {
            var subject = granted?.Subject is { Length: > 0 } s ? s : Anonymous;
            await RecordAsync(context, subject, need.Scope is { } scope ? $"{scope.Type}:{scope.Name}" : "registry:base",
                need.Scope?.Actions ?? [method], granted is null ? (HasBearer(context) ? "invalid token" : "authentication required") : "insufficient scope");
        }
        await ChallengeAsync(context, policy.Options.RealmFor(context), tokens.Service, need.Scope, insufficient: granted is not null);
    }

    private const string Anonymous = "anonymous";

    private static bool IsRead(string method) => HttpMethods.IsGet(method) || HttpMethods.IsHead(method);

    private static bool HasBearer(HttpContext context) =>
        context.Request.Headers.Authorization.ToString().StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase);

    /// <summary>Aimed at the API (any case or escaping of <c>/v2</c>), as opposed to a stray page request.</summary>
    private static bool IsUnderV2(HttpContext context, string raw) =>
        Uri.UnescapeDataString(raw).StartsWith("/v2", StringComparison.OrdinalIgnoreCase) ||
        (context.Request.Path.Value ?? "").StartsWith("/v2", StringComparison.OrdinalIgnoreCase);

    private static string Truncate(string raw) => raw.Length > 300 ? raw[..300] : raw;

    private async Task<GrantedAccess?> ValidateAsync(HttpContext context)
    {
        var header = context.Request.Headers.Authorization.ToString();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) return null;
        return await tokens.ValidateAsync(header["Bearer ".Length..].Trim(), context.RequestAborted);
    }

    /// <summary>The <c>from</c> of a cross-repository mount, when it is a repository other than the target.</summary>
    private static string? MountSourceOf(HttpContext context, RegistryRequest request)
    {
        if (request.Operation != RegistryOperation.StartUpload || !context.Request.Query.ContainsKey("mount")) return null;
        var from = context.Request.Query["from"].ToString();
        return RegistryNames.IsValidRepository(from) && from != request.Route!.Name ? from : null;
    }

    /// <summary>
    /// A mount reads the source repository, so it needs <c>pull</c> there as distribution requires; without it the
    /// mount is not attempted and the client uploads (202), and the refusal is recorded.
    /// </summary>
    private async Task<string?> ReadableMountSourceAsync(HttpContext context, RegistryRequest request, GrantedAccess granted)
    {
        if (MountSourceOf(context, request) is not { } from) return null;
        var pull = new RegistryScope(RegistryScope.Repository, from, [RegistryActions.Pull]);
        if (granted.Allows(pull)) return from;
        await RecordAsync(context, granted.Subject is { Length: > 0 } s ? s : Anonymous, $"{pull.Type}:{pull.Name}", pull.Actions,
            "mount source not readable");
        return null;
    }

    private Task RecordAsync(HttpContext context, string user, string resource, IReadOnlyList<string> actions, string reason) =>
        users.RecordRefusedRequestAsync(new RegistryAccessDenied(user, resource, actions, reason, context.Connection.RemoteIpAddress?.ToString(),
            DateTimeOffset.UtcNow), new RequestOrigin(user, context.TraceIdentifier),
            // A kind of refusal: this caller, credential and request (DenialWindow bounds how many kinds one address opens).
            $"{(HasBearer(context) ? "bearer" : "none")} {context.Request.Method} {Truncate(context.Request.Path.Value ?? "")}", context.RequestAborted);

    public static async Task ChallengeAsync(HttpContext context, string realm, string service, RegistryScope? scope, bool insufficient)
    {
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
