using System.Text.Json;
using Flotilla.Cluster;
using Flotilla.Cluster.Registry;
using Flotilla.Contracts;
using Flotilla.Gateway.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Flotilla.Gateway.Native;

/// <summary>Registry users on the native API: <c>/api/registry/users</c> (list, add, change password, remove).</summary>
public static class RegistryUsersEndpoints
{
    /// <param name="Repositories">Repository patterns the rights hold on; absent = every repository (<c>*</c>).</param>
    public sealed record AddUserRequest(string? Name, string? Password, IReadOnlyList<string>? Rights, IReadOnlyList<string>? Repositories = null);
    public sealed record PasswordRequest(string? Password);
    public sealed record UserDto(string Name, IReadOnlyList<string> Rights, IReadOnlyList<string> Repositories, DateTimeOffset Created)
    {
        public static UserDto From(RegistryUserView u) =>
            new(u.Name, u.Rights, u.Repositories ?? RegistryUserService.DefaultRepositories, u.Created);
    }

    public static void MapRegistryUsersEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/registry/users", (HttpContext context, RegistryUserService users) => Guarded(context, async () =>
        {
            var list = await users.ListAsync(context.RequestAborted);
            await JsonReply.WriteAsync(context, list.Select(UserDto.From).ToList(), options: JsonReply.Native);
        }));
        app.MapPost("/api/registry/users", (HttpContext context, RegistryUserService users) => Guarded(context, async () =>
        {
            var body = await ReadAsync<AddUserRequest>(context);
            var user = await users.AddAsync(body.Name ?? "", body.Password ?? "", body.Rights ?? RegistryUserService.DefaultRights,
                Origin(context), context.RequestAborted, body.Repositories);
            await JsonReply.WriteAsync(context, UserDto.From(user), StatusCodes.Status201Created, JsonReply.Native);
        }));
        app.MapPut("/api/registry/users/{name}/password", (HttpContext context, string name, RegistryUserService users) => Guarded(context, async () =>
        {
            var body = await ReadAsync<PasswordRequest>(context);
            await users.SetPasswordAsync(name, body.Password ?? "", Origin(context), context.RequestAborted);
            context.Response.StatusCode = StatusCodes.Status204NoContent;
        }));
        app.MapDelete("/api/registry/users/{name}", (HttpContext context, string name, RegistryUserService users) => Guarded(context, async () =>
        {
            await users.RemoveAsync(name, Origin(context), context.RequestAborted);
            context.Response.StatusCode = StatusCodes.Status204NoContent;
        }));
    }

    public sealed record TokenKeyDto(string Kid, DateTimeOffset Created, bool Signing);

    /// <summary>
    /// The registry's token signing keys: list, rotate (a new signing key; the old ones keep verifying) and retire
    /// (stop accepting a key's tokens). Every gateway picks the change up within <see cref="Registry.Auth.RegistryTokenSource.DefaultRefresh"/>.
    /// </summary>
    public static void MapRegistryTokenKeyEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/registry/token-keys", (HttpContext context, Marten.IDocumentStore store) => Guarded(context, async () =>
        {
            var ring = await new RegistryTokenKeyStore(store).LoadRingAsync(null, null, context.RequestAborted);
            await JsonReply.WriteAsync(context, ring.Keys.Select(k => new TokenKeyDto(k.Kid, k.Created, k == ring.Signing)).ToList(),
                options: JsonReply.Native);
        }));
        app.MapPost("/api/registry/token-keys", (HttpContext context, Marten.IDocumentStore store) => Guarded(context, async () =>
        {
            var key = await new RegistryTokenKeyStore(store).RotateAsync(context.RequestAborted);
            await RefreshAsync(context);
            await JsonReply.WriteAsync(context, new TokenKeyDto(key.Kid, key.Created, true), StatusCodes.Status201Created, JsonReply.Native);
        }));
        app.MapDelete("/api/registry/token-keys/{kid}", (HttpContext context, string kid, Marten.IDocumentStore store) => Guarded(context, async () =>
        {
            await new RegistryTokenKeyStore(store).RetireAsync(kid, context.RequestAborted);
            await RefreshAsync(context);
            context.Response.StatusCode = StatusCodes.Status204NoContent;
        }));
    }

    /// <summary>This process's registry (if it has one) takes the change at once; others within their refresh.</summary>
    private static async Task RefreshAsync(HttpContext context)
    {
        if (context.RequestServices.GetService(typeof(Registry.Auth.RegistryTokenSource)) is Registry.Auth.RegistryTokenSource source)
            await source.GetAsync(context.RequestAborted, force: true);
    }

    // The native API listens on loopback and has no users of its own yet: changes are attributed to the local operator.
    private static RequestOrigin Origin(HttpContext context) => Listeners.NativeApiAuth.Origin(context);

    private static async Task<T> ReadAsync<T>(HttpContext context) =>
        await JsonSerializer.DeserializeAsync<T>(context.Request.Body, JsonReply.Native, context.RequestAborted)
        ?? throw new OperationRejectedException(RejectionCode.InvalidArgument, "a JSON body is required");

    private static async Task Guarded(HttpContext context, Func<Task> action)
    {
        try
        {
            await action();
        }
        catch (OperationRejectedException ex) when (!context.Response.HasStarted)
        {
            await JsonReply.ErrorAsync(context, (int)ex.Code, ex.Message);
        }
        catch (JsonException ex) when (!context.Response.HasStarted)
        {
            await JsonReply.ErrorAsync(context, StatusCodes.Status400BadRequest, $"invalid JSON: {ex.Message}");
        }
    }
}
