using Flotilla.Contracts.Volumes;
using Marten.Events.Aggregation;

namespace Flotilla.Cluster.Volumes;

/// <summary>Read model of one local volume: its home node and what it was created with.</summary>
public sealed class VolumeView
{
    public string Id { get; set; } = "";
    public string Name { get; set; } = "";
    /// <summary>The node whose data directory holds the volume.</summary>
    public string Node { get; set; } = "";
    public Dictionary<string, string> Labels { get; set; } = [];
    public Dictionary<string, string> Options { get; set; } = [];
    /// <summary>How <see cref="Node"/> was chosen.</summary>
    public string Reason { get; set; } = "";
    public DateTimeOffset CreatedAt { get; set; }
}

public sealed class VolumeViewProjection : SingleStreamProjection<VolumeView, string>
{
    public static VolumeView Create(VolumeCreated e) => Fold(new VolumeView(), e);

    public static VolumeView Apply(VolumeCreated e, VolumeView view) => Fold(view, e);

    public static bool ShouldDelete(VolumeRemoved e) => true;

    private static VolumeView Fold(VolumeView view, VolumeCreated e)
    {
        view.Id = VolumeRegistry.Key(e.Name);
        view.Name = e.Name;
        view.Node = e.Node;
        view.Labels = e.Labels.ToDictionary();
        view.Options = e.Options.ToDictionary();
        view.Reason = e.Reason;
        view.CreatedAt = e.At;
        return view;
    }
}
