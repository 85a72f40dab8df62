using System.Security.Cryptography;
using Akka.Actor;
using Akka.Hosting;
using Flotilla.Contracts;
using Flotilla.Contracts.Containers;
using Marten;

namespace Flotilla.Cluster.Containers;

/// <summary>
/// The container use cases the API surfaces share: Docker's name and id resolution over the container
/// projection, unique names, and commands to the container entities with their refusals as
/// <see cref="OperationRejectedException"/>.
/// </summary>
public sealed class ContainerService(IDocumentStore store, IRequiredActor<ContainerEntity> containers, Scheduling.PlacementService placement,
    CommandTimeouts timeouts, EventStore.IEventJournal journal)
{

    public async Task<IReadOnlyList<ContainerView>> ListAsync(CancellationToken cancellationToken = default)
    {
        await using var session = store.QuerySession();
        return await session.Query<ContainerView>().OrderByDescending(c => c.CreatedAt).ToListAsync(cancellationToken);
    }

    /// <summary>Docker's lookup: full id, then exact name (with or without the leading '/'), then a unique id prefix.</summary>
    public async Task<ContainerView?> FindAsync(string text, CancellationToken cancellationToken = default)
    {
        if (string.IsNullOrEmpty(text)) return null;
        await using var session = store.QuerySession();
        var name = text.TrimStart('/');
        var exact = await session.Query<ContainerView>().Where(c => c.ContainerId == text || c.Name == name).ToListAsync(cancellationToken);
        if (exact.FirstOrDefault(c => c.ContainerId == text) is { } byId) return byId;
        if (exact.FirstOrDefault(c => c.Name == name) is { } byName) return byName;
        if (!text.All(char.IsAsciiHexDigitLower)) return null;
        var matches = await session.Query<ContainerView>().Where(c => c.ContainerId.StartsWith(text)).Take(2).ToListAsync(cancellationToken);
        return matches.Count switch
        {
            1 => matches[0],
            0 => null,
            _ => throw new OperationRejectedException(RejectionCode.InvalidArgument, $"multiple containers found with provided prefix: {text}"),
        };
    }

    /// <summary>Like <see cref="FindAsync"/>, but Docker's 404 when there is none.</summary>
    public async Task<ContainerView> ResolveAsync(string text, CancellationToken cancellationToken = default) =>
        await FindAsync(text, cancellationToken) ?? throw new OperationRejectedException(RejectionCode.NotFound, $"No such container: {text}");

    /// <summary>
    /// The entity's state. When the entity does not answer within <see cref="EntityReadTimeout"/> — a message sent to
    /// a shard whose host just died is lost until the shard lives on a survivor, seconds later — the same state is
    /// folded from the container's stream instead (the entity's state is exactly that fold), so a read stays prompt
    /// during a failover.
    /// </summary>
    public async Task<ContainerSnapshot> GetAsync(string containerId, CancellationToken cancellationToken = default)
    {
        ContainerSnapshot snapshot;
        try
        {
            snapshot = await containers.ActorRef.Ask<ContainerSnapshot>(new GetContainer(containerId), EntityReadTimeout, cancellationToken);
        }
        catch (AskTimeoutException)
        {
            var stream = await journal.ReadAsync(ContainerStreams.Key(containerId), cancellationToken);
            var state = stream.Events.OfType<IContainerEvent>().Aggregate(ContainerState.Empty(containerId), ContainerFold.Apply);
            snapshot = ContainerEntity.SnapshotOf(state, stream.Version, "journal");
        }
        return snapshot.Exists ? snapshot : throw new OperationRejectedException(RejectionCode.NotFound, $"No such container: {containerId}");
    }

    private static readonly TimeSpan EntityReadTimeout = TimeSpan.FromMilliseconds(750);

    /// <summary>Creates a container on the node the scheduler picks (constraints and reservations from the definition).</summary>
    /// <param name="constraints">Placement constraints the request implies besides its own (the node its volumes live on).</param>
    public async Task<(string Id, PlacementDecision Placement)> CreateScheduledAsync(string? name, ContainerDefinition definition, RequestOrigin origin,
        CancellationToken cancellationToken = default, IReadOnlyList<string>? constraints = null)
    {
        var random = string.IsNullOrEmpty(name);
        if (!random && !ContainerNames.IsValid(name!))
            throw new OperationRejectedException(RejectionCode.InvalidArgument, $"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
        var id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        var (request, cleaned) = Scheduling.PlacementRequest.From(definition);
        if (constraints is { Count: > 0 }) request = request with { Constraints = [.. request.Constraints, .. constraints] };
        var decision = await placement.PlaceAsync(id, request, cancellationToken);
        // No read of the names first: the store's unique index on the name is the check (see FlotillaStore).
        for (var attempt = 0; ; attempt++)
        {
            var candidate = random ? ContainerNames.Random(attempt > 5) : name!;
            try
            {
                await SendAsync(new CreateContainer(id, candidate, cleaned, decision.Node, origin, decision));
                placement.Recorded(id);
                return (id, decision);
            }
            catch (OperationRejectedException ex) when (ex.Code == RejectionCode.Conflict)
            {
                if (await NameHolderAsync(candidate, cancellationToken) is { } holder)
                {
                    if (random && attempt < 20) continue;
                    placement.Release(id);
                    throw NameInUse(candidate, holder);
                }
                placement.Release(id);
                throw;
            }
        }
    }

    public async Task RenameAsync(ContainerView container, string newName, RequestOrigin origin, CancellationToken cancellationToken = default)
    {
        if (!ContainerNames.IsValid(newName))
            throw new OperationRejectedException(RejectionCode.InvalidArgument, $"Invalid container name ({newName}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
        if (await NameHolderAsync(newName, cancellationToken) is { } taken && taken != container.ContainerId) throw NameInUse(newName, taken);
        try
        {
            await SendAsync(new RenameContainer(container.ContainerId, newName, origin));
        }
        catch (OperationRejectedException ex) when (ex.Code == RejectionCode.Conflict)
        {
            // Taken between the look and the append (the unique index answered).
            if (await NameHolderAsync(newName, cancellationToken) is { } holder && holder != container.ContainerId) throw NameInUse(newName, holder);
            throw;
        }
    }

    private async Task<string?> NameHolderAsync(string name, CancellationToken cancellationToken)
    {
        await using var session = store.QuerySession();
        return await session.Query<ContainerView>().Where(c => c.Name == name).Select(c => c.ContainerId).FirstOrDefaultAsync(cancellationToken);
    }

    private static OperationRejectedException NameInUse(string name, string holder) => new(RejectionCode.Conflict,
        $"Conflict. The container name \"/{name}\" is already in use by container \"{holder}\". You have to remove (or rename) that container to be able to reuse that name.");

    /// <summary>
    /// Sends a command to the container's entity; a refusal becomes an <see cref="OperationRejectedException"/>. The ask
    /// lasts as long as the command may take (<see cref="CommandTimeouts.Entity"/>): past it, a
    /// <see cref="CommandTimeoutException"/> that says so.
    /// </summary>
    public async Task<ContainerCommandAccepted> SendAsync(IContainerCommand command, TimeSpan? timeout = null)
    {
        var wait = timeout ?? timeouts.Entity(command, CommandTimeouts.NeedsContainerStopTimeout(command) ? await StopTimeoutOfAsync(command.ContainerId) : null);
        object reply;
        try
        {
            reply = await containers.ActorRef.Ask<object>(command, wait);
        }
        catch (AskTimeoutException)
        {
            throw new CommandTimeoutException(
                $"{Verb(command)} container {command.ContainerId}: no answer within {wait.TotalSeconds:0} s; it may still complete (see docker inspect)");
        }
        return reply switch
        {
            ContainerCommandAccepted ok => ok,
            CommandRejected r => throw new OperationRejectedException(r.Code, r.Message),
            var other => throw new InvalidOperationException($"unexpected reply {other.GetType().Name}"),
        };
    }

    /// <summary>The container's <c>--stop-timeout</c>; null when it has none or there is no such container (the default then).</summary>
    private async Task<int?> StopTimeoutOfAsync(string containerId)
    {
        try
        {
            return (await GetAsync(containerId)).Definition?.StopTimeout;
        }
        catch (OperationRejectedException)
        {
            return null;
        }
    }

    private static string Verb(IContainerCommand command) => command switch
    {
        StopContainer => "stop",
        RestartContainer => "restart",
        KillContainer => "kill",
        RemoveContainer => "remove",
        StartContainer => "start",
        _ => command.GetType().Name,
    };

    /// <summary>Waits for a wait condition; the ask lasts as long as the caller's cancellation allows.</summary>
    public async Task<ContainerWaitResult> WaitAsync(string containerId, WaitCondition condition, CancellationToken cancellationToken)
    {
        var reply = await containers.ActorRef.Ask<object>(new WaitForContainer(containerId, condition), Timeout.InfiniteTimeSpan, cancellationToken);
        return reply switch
        {
            ContainerWaitResult r => r,
            CommandRejected r => throw new OperationRejectedException(r.Code, r.Message),
            var other => throw new InvalidOperationException($"unexpected reply {other.GetType().Name}"),
        };
    }
}

/// <summary>Docker's container names: validation and the random adjective_surname default.</summary>
public static class ContainerNames
{
    private static readonly string[] Adjectives =
        ["admiring", "bold", "brave", "busy", "calm", "clever", "eager", "elastic", "focused", "gallant", "happy", "jolly",
         "keen", "loving", "modest", "nifty", "quirky", "sharp", "stoic", "vibrant", "wizardly", "zealous"];

    private static readonly string[] Surnames =
        ["babbage", "curie", "darwin", "einstein", "feynman", "galileo", "hopper", "kepler", "lamport", "lovelace",
         "meitner", "newton", "noether", "pasteur", "ritchie", "shannon", "thompson", "torvalds", "turing", "wozniak"];

    public static bool IsValid(string name) =>
        name.Length is > 0 and <= 255 && char.IsAsciiLetterOrDigit(name[0]) &&
        name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '.' or '-');

    public static string Random(bool withNumber) =>
        $"{Adjectives[System.Random.Shared.Next(Adjectives.Length)]}_{Surnames[System.Random.Shared.Next(Surnames.Length)]}" +
        (withNumber ? System.Random.Shared.Next(1, 100).ToString(System.Globalization.CultureInfo.InvariantCulture) : "");
}
