using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Hosting;

namespace Flotilla.Gateway.Listeners;

/// <summary>
/// When the process stops, requests still open a moment later are cut: a follow (<c>docker logs -f</c>,
/// <c>docker events</c>, <c>docker wait</c>, the audit follow) or a hijacked stream (attach, exec) never ends by itself,
/// and Kestrel's graceful stop would wait for it until the host's shutdown timeout (20 s, kept that long for a node's
/// containers to stop). Requests that finish within <see cref="Grace"/> finish normally; dockerd, too, ends its
/// clients' streams when it stops.
/// </summary>
public sealed class StreamsEndOnShutdown : IDisposable
{
    public static readonly TimeSpan Grace = TimeSpan.FromMilliseconds(500);

    private readonly CancellationTokenSource _cut = new();
    private readonly CancellationTokenRegistration _stopping;

    public StreamsEndOnShutdown(IHostApplicationLifetime lifetime) =>
        _stopping = lifetime.ApplicationStopping.Register(() => _cut.CancelAfter(Grace));

    /// <summary>Cancelled <see cref="Grace"/> after the process began to stop.</summary>
    public CancellationToken Cut => _cut.Token;

    /// <summary>Aborts <paramref name="context"/> when <see cref="Cut"/> fires while the request runs (dispose when it ends).</summary>
    public CancellationTokenRegistration AbortOnCut(HttpContext context) =>
        _cut.Token.UnsafeRegister(static state => ((HttpContext)state!).Abort(), context);

    /// <summary>The same for a connection taken over before the HTTP layer (a hijacked stream).</summary>
    public CancellationTokenRegistration AbortOnCut(ConnectionContext connection) =>
        _cut.Token.UnsafeRegister(static state => ((ConnectionContext)state!).Abort(new ConnectionAbortedException("Flotilla is stopping")), connection);

    /// <summary>First in the pipeline: every request is cut when the process stops (after the grace).</summary>
    public static Func<RequestDelegate, RequestDelegate> Middleware(StreamsEndOnShutdown streams) => next => async context =>
    {
        using var registration = streams.AbortOnCut(context);
        await next(context);
    };

    public void Dispose()
    {
        _stopping.Dispose();
        _cut.Dispose();
    }
}
