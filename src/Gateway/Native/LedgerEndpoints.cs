using Flotilla.Cluster.Audit;
using Flotilla.Gateway.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Flotilla.Gateway.Native;

/// <summary><c>GET /api/audit/verify</c> (tamper evidence) and <c>POST /api/replay</c> (rebuild every read model).</summary>
public static class LedgerEndpoints
{
    public static void MapLedgerEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/audit/verify", async (HttpContext context, AuditLedger ledger) =>
            await JsonReply.WriteAsync(context, await ledger.VerifyAsync(context.RequestAborted), options: JsonReply.Native));
        app.MapPost("/api/replay", async (HttpContext context, ProjectionReplay replay) =>
            await JsonReply.WriteAsync(context, await replay.RebuildAllAsync(context.RequestAborted), options: JsonReply.Native));
    }
}
