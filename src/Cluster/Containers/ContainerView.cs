using Flotilla.Contracts.Containers;
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
    /// <summary>Docker's status word: created, running, paused, restarting, exited, dead.</summary>
    public string Status { get; set; } = ContainerStatus.Created;
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
    public string RestartPolicy { get; set; } = "no";
    /// <summary>Docker's health status; null = no healthcheck (<c>none</c>). <see cref="ContainerHealthFold.StatusAfter"/>.</summary>
    public HealthStatus? Health { get; set; }
    /// <summary>The definition has a healthcheck probe (a start sets the status to starting).</summary>
    public bool HasHealthProbe { get; set; }
}

public sealed class ContainerViewProjection : SingleStreamProjection<ContainerView, string>
{
    public static ContainerView Create(ContainerCreated e) => new()
    {
        Id = ContainerStreams.Key(e.ContainerId),
        ContainerId = e.ContainerId,
        Name = e.Name,
        Image = e.Definition.Image,
        ImageId = e.Definition.ImageId,
        ImageLayers = [.. e.Definition.ImageLayers],
        Command = string.Join(' ', e.Definition.Args.Select(Quote)),
        Desired = DesiredState.Created,
        Status = ContainerStatus.Created,
        Node = e.Node,
        Labels = e.Definition.Labels.ToDictionary(),
        Mounts = [.. e.Definition.Mounts],
        NetworkMode = e.Definition.NetworkMode,
        CreatedAt = e.At,
        Memory = e.Definition.Memory,
        NanoCpus = e.Definition.NanoCpus,
        RestartPolicy = e.Definition.RestartPolicy.Name,
        HasHealthProbe = e.Definition.HasHealthProbe(),
    };

    private static string Quote(string arg) => arg.Contains(' ') ? $"\"{arg}\"" : arg;

    public static ContainerView Apply(ContainerRenamed e, ContainerView v) => With(v, x => x.Name = e.NewName);

    public static ContainerView Apply(ContainerStarted e, ContainerView v) => With(Health(v, e), x =>
    {
        x.Desired = DesiredState.Running;
        x.Status = ContainerStatus.Running;
        x.Pid = e.Pid;
        x.Node = e.Node;
        x.Generation = e.Generation;
        x.StartedAt = e.At;
        x.ExitCode = 0;
    });

    public static ContainerView Apply(ContainerStartFailed e, ContainerView v) => With(v, x =>
    {
        x.Desired = DesiredState.Stopped;
        x.Generation = e.Generation;
        x.ExitCode = e.ExitCode;
        if (x.Status == ContainerStatus.Restarting) x.Status = ContainerStatus.Exited;
    });

    public static ContainerView Apply(ContainerExited e, ContainerView v) => With(Health(v, e), x =>
    {
        if (e.Generation != x.Generation) return;
        x.Status = ContainerStatus.Exited;
        x.Pid = 0;
        x.ExitCode = e.ExitCode;
        x.FinishedAt = e.At;
    });

    public static ContainerView Apply(ContainerStopped e, ContainerView v) => With(v, x => x.Desired = DesiredState.Stopped);

    public static ContainerView Apply(ContainerRestarted e, ContainerView v) => With(v, x =>
    {
        x.RestartCount = e.RestartCount;
        if (x.Status is not (ContainerStatus.Running or ContainerStatus.Paused)) x.Status = ContainerStatus.Restarting;
    });

    public static ContainerView Apply(ContainerPaused e, ContainerView v) => With(Health(v, e), x => x.Status = ContainerStatus.Paused);

    public static ContainerView Apply(ContainerUnpaused e, ContainerView v) => With(v, x => x.Status = ContainerStatus.Running);

    public static ContainerView Apply(ContainerPlaced e, ContainerView v) => With(v, x => x.Node = e.Node);

    public static ContainerView Apply(ContainerRescheduled e, ContainerView v) => With(Health(v, e), x =>
    {
        x.Node = e.To;
        x.Status = ContainerStatus.Restarting;
        x.Pid = 0;
    });

    public static ContainerView Apply(ContainerNodeLost e, ContainerView v) => With(Health(v, e), x =>
    {
        if (e.Generation != x.Generation) return;
        x.Status = ContainerStatus.Exited;
        x.Pid = 0;
        x.ExitCode = ContainerFold.NodeLostExitCode;
        x.FinishedAt = e.At;
    });

    public static ContainerView Apply(ContainerHealthChanged e, ContainerView v) => Health(v, e);

    public static bool ShouldDelete(ContainerRemoved e) => true;

    /// <summary>The health status after the event, by the fold's rules (applied before the event's other changes).</summary>
    private static ContainerView Health(ContainerView v, IContainerEvent e) => With(v, x =>
        x.Health = ContainerHealthFold.StatusAfter(x.Health, e, x.HasHealthProbe, x.Generation, x.Status == ContainerStatus.Exited));

    private static ContainerView With(ContainerView view, Action<ContainerView> change)
    {
        change(view);
        return view;
    }
}
