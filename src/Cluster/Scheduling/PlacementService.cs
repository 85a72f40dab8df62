using Akka.Actor;
using Akka.Hosting;
using Flotilla.Contracts;
using Flotilla.Contracts.Containers;

namespace Flotilla.Cluster.Scheduling;

/// <summary>
/// What a new container asks of the scheduler, read from its create request the way Swarm classic did:
/// <c>-e constraint:KEY==VALUE</c> (taken out of the environment), the label <c>flotilla.constraint</c>
/// (several separated by ';' or ','), the label <c>flotilla.strategy</c>, and its <c>-m</c> / <c>--cpus</c>.
/// </summary>
public sealed record PlacementRequest(long MemoryBytes, long NanoCpus, IReadOnlyList<string> Constraints, string? Strategy)
{
    public const string ConstraintLabel = "flotilla.constraint";
    public const string StrategyLabel = "flotilla.strategy";
    private const string EnvPrefix = "constraint:";

    /// <summary>The request, and the definition without the constraint pseudo-variables.</summary>
    public static (PlacementRequest Request, ContainerDefinition Definition) From(ContainerDefinition definition)
    {
        var constraints = definition.Env.Where(e => e.StartsWith(EnvPrefix, StringComparison.Ordinal)).Select(e => e[EnvPrefix.Length..]).ToList();
        if (definition.Labels.TryGetValue(ConstraintLabel, out var labelled))
            constraints.AddRange(labelled.Split([';', ','], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        var strategy = definition.Labels.TryGetValue(StrategyLabel, out var s) && s.Length > 0 ? s : null;
        var env = constraints.Count == 0 ? definition.Env : definition.Env.Where(e => !e.StartsWith(EnvPrefix, StringComparison.Ordinal)).ToList();
        return (new PlacementRequest(definition.Memory, definition.NanoCpus, constraints, strategy), definition with { Env = env });
    }
}

/// <summary>Asks the scheduler singleton for a node; a refusal is Docker's error for an impossible placement.</summary>
public sealed class PlacementService(IRequiredActor<Scheduler> scheduler)
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(30);

    public async Task<PlacementDecision> PlaceAsync(string containerId, PlacementRequest request, CancellationToken cancellationToken = default)
    {
        foreach (var constraint in request.Constraints)
        {
            try
            {
                PlacementConstraint.Parse(constraint);
            }
            catch (FormatException ex)
            {
                throw new OperationRejectedException(RejectionCode.InvalidArgument, ex.Message);
            }
        }
        if (!PlacementStrategies.IsKnown(request.Strategy))
            throw new OperationRejectedException(RejectionCode.InvalidArgument, $"unknown placement strategy '{request.Strategy}': spread or binpack");
        var reply = await scheduler.ActorRef.Ask<object>(
            new PlaceContainer(containerId, request.MemoryBytes, request.NanoCpus, request.Constraints, request.Strategy), AskTimeout, cancellationToken);
        return reply switch
        {
            PlacementDecision d => d,
            PlacementRefused r => throw new OperationRejectedException(RejectionCode.Internal, r.Reason),
            var other => throw new InvalidOperationException($"unexpected scheduler reply {other.GetType().Name}"),
        };
    }

    /// <summary>The container placed by <see cref="PlaceAsync"/> is stored (its place now shows in the projection).</summary>
    public void Recorded(string containerId) => scheduler.ActorRef.Tell(new PlacementRecorded(containerId));

    /// <summary>The container placed by <see cref="PlaceAsync"/> will not be created: free what it reserved.</summary>
    public void Release(string containerId) => scheduler.ActorRef.Tell(new ReleasePlacement(containerId));
}
