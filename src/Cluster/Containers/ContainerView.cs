using Flotilla.Contracts.Containers;
using JasperFx.Events;
using Marten;
using Marten.Events.Aggregation;

namespace Flotilla.Cluster.Containers;

/// <summary>Read model of one container, for listings (<c>docker ps</c>), name resolution and counts.</summary>
public sealed class ContainerView
{
    public string Id { get; set; } = "";
    public string ContainerId { get; set; } = "";
    public string Name { get; set; } = "";
    /// <summary>The image as the user named it.</summary>
    public string Image { get; set; } = "";
    public string ImageId { get; set; } = "";
    /// <summary>The image's layers (DiffIDs) the container runs on: image GC keeps them even once the image itself is removed.</summary>
    public List<string> ImageLayers { get; set; } = [];
    public string Command { get; set; } = "";
    public DesiredState Desired { get; set; }
    public ContainerStatus Status { get; set; } = ContainerStatus.Created;
    public string Node { get; set; } = "";
    public int Pid { get; set; }
    public int ExitCode { get; set; }
    public int RestartCount { get; set; }
    public Dictionary<string, string> Labels { get; set; } = [];
    public List<ContainerMount> Mounts { get; set; } = [];
    public string NetworkMode { get; set; } = "";
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset? StartedAt { get; set; }
    public DateTimeOffset? FinishedAt { get; set; }
    public long Generation { get; set; }
    /// <summary>Reservations the scheduler counts against the node (<c>-m</c>, <c>--cpus</c>).</summary>
    public long Memory { get; set; }
    public long NanoCpus { get; set; }
    public RestartPolicyName RestartPolicy { get; set; }
    /// <summary>Docker's health status; null = no healthcheck (<c>none</c>): the entity's <see cref="ContainerState.Health"/>.</summary>
    public HealthStatus? Health { get; set; }
    /// <summary>The definition has a healthcheck probe (a start sets the status to starting).</summary>
    public bool HasHealthProbe { get; set; }

    /// <summary>The entity's state this view was made from: the next event is folded into it (<see cref="ContainerViewProjection"/>).</summary>
    public ContainerState? State { get; set; }

    /// <summary>The view of a container whose entity state is <paramref name="state"/> (one that exists, so has a definition).</summary>
    public static ContainerView From(ContainerState state)
    {
        var definition = state.Definition ?? throw new ArgumentException($"container {state.ContainerId} has no definition", nameof(state));
        return new ContainerView
        {
            Id = ContainerStreams.Key(state.ContainerId),
            ContainerId = state.ContainerId,
            Name = state.Name,
            Image = definition.Image,
            ImageId = definition.ImageId,
            ImageLayers = [.. definition.ImageLayers],
            Command = string.Join(' ', definition.Args.Select(Quote)),
            Desired = state.Desired,
            Status = state.Status,
            Node = state.Node,
            Pid = state.Pid,
            ExitCode = state.ExitCode,
            RestartCount = state.RestartCount,
            Labels = definition.Labels.ToDictionary(),
            Mounts = [.. definition.Mounts],
            NetworkMode = definition.NetworkMode,
            CreatedAt = state.CreatedAt,
            StartedAt = state.StartedAt,
            FinishedAt = state.FinishedAt,
            Generation = state.Generation,
            Memory = definition.Memory,
            NanoCpus = definition.NanoCpus,
            RestartPolicy = definition.RestartPolicy.Name,
            Health = state.Health?.Status,
            HasHealthProbe = definition.HasHealthProbe(),
            State = state,
        };
    }

    private static string Quote(string arg) => arg.Contains(' ') ? $"\"{arg}\"" : arg;
}

/// <summary>
/// The view is the entity's state mapped for listing: each event is folded by <see cref="ContainerFold.Apply"/> (the
/// entity's own fold) into the state the view carries, and the view is made again from that state by
/// <see cref="ContainerView.From"/>. A new event is folded in <see cref="ContainerFold"/> only; nothing here knows events.
/// </summary>
public sealed class ContainerViewProjection : SingleStreamProjection<ContainerView, string>
{
    public ContainerViewProjection()
    {
        foreach (var type in ContainerEventTypes.All) IncludeType(type);
    }

    public override async ValueTask<ContainerView?> EvolveAsync(ContainerView? snapshot, string id, IQuerySession session, IEvent e,
        CancellationToken cancellation)
    {
        if (e.Data is not IContainerEvent change) return snapshot;
        var state = snapshot switch
        {
            null => ContainerState.Empty(change.ContainerId),
            { State: { } carried } => carried,
            // A view written before views carried the state: the state is the fold of the stream before this event.
            _ => ContainerFold.Replay(change.ContainerId,
                (await session.Events.FetchStreamAsync(id, e.Version - 1, token: cancellation)).Select(x => x.Data).OfType<IContainerEvent>()),
        };
        var next = ContainerFold.Apply(state, change);
        // A removed container has no view (null deletes the document).
        return next.Exists ? ContainerView.From(next) : null;
    }
}
