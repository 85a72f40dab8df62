using Flotilla.Contracts.Containers;
using Marten.Events.Aggregation;

namespace Flotilla.Cluster.Containers;

/// <summary>Read model of one container (for listings and counts), folded from its stream.</summary>
public sealed class ContainerView
{
    public string Id { get; set; } = "";
    public string ContainerId { get; set; } = "";
    public string Name { get; set; } = "";
    public string Image { get; set; } = "";
    public DesiredState Desired { get; set; }
    /// <summary>Docker's status word: created, running, paused, restarting, exited, dead.</summary>
    public string Status { get; set; } = "created";
    public string? Node { get; set; }
    public Dictionary<string, string> Labels { get; set; } = [];
    public DateTimeOffset CreatedAt { get; set; }
}

public sealed class ContainerViewProjection : SingleStreamProjection<ContainerView, string>
{
    public static ContainerView Create(ContainerCreated e) => new()
    {
        Id = ContainerStreams.Key(e.ContainerId),
        ContainerId = e.ContainerId,
        Name = e.Name,
        Image = e.Image,
        Desired = DesiredState.Created,
        Status = "created",
        Labels = e.Labels.ToDictionary(),
        CreatedAt = e.At,
    };

    public static ContainerView Apply(ContainerRenamed e, ContainerView view)
    {
        view.Name = e.NewName;
        return view;
    }
}
