using System.Security.Cryptography;
using System.Text;
using Flotilla.Cluster.Audit;
using Flotilla.Contracts;
using Flotilla.Contracts.Access;
using Flotilla.Gateway.Http;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Flotilla.Gateway.Listeners;

/// <summary>What a native API token may do.</summary>
public enum NativeRole
{
    /// <summary>Everything: registry users, drain/activate, gc, replay, audit.</summary>
    Admin,

    /// <summary>Reads only (GET/HEAD): the audit log, its export and verification, nodes, container history.</summary>
    Audit,
}

/// <summary>
/// The native API's bearer tokens, one file per role under the data directory, created at first start with mode
/// 0600 (whoever can read a file holds that role; hand the audit one out by changing its group and mode).
/// </summary>
public sealed class NativeApiTokens
{
    public const string AdminFile = "native-api.token";
    public const string AuditFile = "native-api-audit.token";

    private readonly (NativeRole Role, byte[] Token)[] _tokens;

    private NativeApiTokens((NativeRole, byte[])[] tokens) => _tokens = tokens;

    public static string FileOf(string dataRoot, NativeRole role) => Path.Combine(dataRoot, role == NativeRole.Admin ? AdminFile : AuditFile);

    /// <summary>Reads the token files under <paramref name="dataRoot"/>, creating any that is missing.</summary>
    public static NativeApiTokens Ensure(string dataRoot)
    {
        Directory.CreateDirectory(dataRoot);
        return new NativeApiTokens([.. Enum.GetValues<NativeRole>().Select(role => (role, Encoding.ASCII.GetBytes(EnsureFile(FileOf(dataRoot, role)))))]);
    }

    private static string EnsureFile(string path)
    {
        if (!OperatingSystem.IsLinux()) throw new PlatformNotSupportedException("the native API's token files need Linux file modes");
        if (!File.Exists(path))
        {
            var token = Base64Url(RandomNumberGenerator.GetBytes(32));
            try
            {
                // Created 0600 in one step: never readable by others, not even for a moment.
                using var file = new FileStream(path, new FileStreamOptions
                {
                    Mode = FileMode.CreateNew,
                    Access = FileAccess.Write,
                    UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
                });
                file.Write(Encoding.ASCII.GetBytes(token + "\n"));
            }
            catch (IOException) when (File.Exists(path))
            {
                // Another process made it first: use theirs.
            }
        }
        var text = File.ReadAllText(path).Trim();
        if (text.Length < 32) throw new InvalidOperationException($"{path}: the native API token is too short (delete the file to make a new one)");
        return text;
    }

    /// <summary>The role of a bearer token, or null for none or a wrong one (compared in constant time).</summary>
    public NativeRole? RoleOf(string? authorization)
    {
        if (authorization is null || !authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) return null;
        var presented = Encoding.ASCII.GetBytes(authorization[7..].Trim());
        NativeRole? match = null;
        foreach (var (role, token) in _tokens)
            if (CryptographicOperations.FixedTimeEquals(presented, token)) match = role;
        return match;
    }

    private static string Base64Url(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}

/// <summary>
/// Authenticates every native API request with a bearer token (<see cref="NativeApiTokens"/>); the audit role may
/// only read. The caller recorded on changes is the token's role (<c>token:admin</c>).
/// </summary>
public sealed class NativeApiAuth(RequestDelegate next, NativeApiTokens tokens, ApiAccessLog denials, ILogger<NativeApiAuth> logger)
{
    private const string CallerItem = "native-api-caller";

    public async Task InvokeAsync(HttpContext context)
    {
        var role = tokens.RoleOf(context.Request.Headers.Authorization.FirstOrDefault());
        if (role is null)
        {
            context.Response.Headers.WWWAuthenticate = "Bearer realm=\"flotilla\"";
            await RefuseAsync(context, StatusCodes.Status401Unauthorized, Forwarding.CallerIdentity.Direct(context.Connection.RemoteIpAddress),
                context.Request.Headers.Authorization.Count == 0
                    ? $"the native API needs a token: send the one in <data>/{NativeApiTokens.AdminFile} (or {NativeApiTokens.AuditFile} to read the audit log) as a bearer token"
                    : "invalid native API token");
            return;
        }
        var caller = "token:" + role.Value.ToString().ToLowerInvariant();
        if (role == NativeRole.Audit && !(HttpMethods.IsGet(context.Request.Method) || HttpMethods.IsHead(context.Request.Method)))
        {
            await RefuseAsync(context, StatusCodes.Status403Forbidden, caller, "the audit token may only read");
            return;
        }
        context.Items[CallerItem] = caller;
        await next(context);
    }

    /// <summary>Who made a native API request, for the audit trail.</summary>
    public static RequestOrigin Origin(HttpContext context) =>
        new(context.Items.TryGetValue(CallerItem, out var caller) && caller is string user ? user : "anonymous", context.TraceIdentifier);

    private async Task RefuseAsync(HttpContext context, int status, string user, string reason)
    {
        var request = context.Request;
        await ClientRequestGuard.RecordAsync(denials, logger, new ApiAccessDenied(nameof(ClientListener.NativeApi), request.Method,
            ClientRequestGuard.Truncate(request.Path.Value) ?? "", reason, null, ClientRequestGuard.Truncate(request.Host.Value),
            context.Connection.RemoteIpAddress?.ToString(), DateTimeOffset.UtcNow), user, context.TraceIdentifier);
        await JsonReply.ErrorAsync(context, status, reason);
    }
}
