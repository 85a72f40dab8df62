using Akka.Actor;
using Akka.Event;

namespace Flotilla.Cluster.Audit;

/// <summary>Cluster singleton: checkpoints the global event sequence on a timer (one writer, so checkpoints never fork).</summary>
public sealed class AuditCheckpointer : ReceiveActor, IWithTimers
{
    public const string SingletonName = "audit-checkpointer";

    public ITimerScheduler Timers { get; set; } = null!;

    public AuditCheckpointer(AuditLedger ledger, TimeSpan interval)
    {
        var log = Context.GetLogger();
        ReceiveAsync<Tick>(async _ =>
        {
            try
            {
                if (await ledger.CheckpointAsync(DateTimeOffset.UtcNow) is { } c)
                    log.Debug("audit checkpoint {0}: {1} event(s) up to sequence {2}", c.Id, c.Count, c.ToSequence);
            }
            catch (Exception ex)
            {
                // The next tick covers the same range again; nothing is lost by waiting.
                log.Warning("audit checkpoint failed: {0}", ex.Message);
            }
        });
        Timers.StartPeriodicTimer("checkpoint", Tick.Instance, interval, interval);
    }

    private sealed record Tick
    {
        public static readonly Tick Instance = new();
    }

    public static Props PropsFor(AuditLedger ledger, TimeSpan interval) => Props.Create(() => new AuditCheckpointer(ledger, interval));
}
