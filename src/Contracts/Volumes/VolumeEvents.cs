using Flotilla.Contracts.Wire;
using MessagePack;

namespace Flotilla.Contracts.Volumes;

/// <summary>An event in a named local volume's stream (<c>volume-&lt;name&gt;</c>).</summary>
[Union(0, typeof(VolumeCreated))]
[Union(1, typeof(VolumeRemoved))]
public interface IVolumeEvent : IFlotillaMessage
{
    string Name { get; }
}

/// <summary>
/// A local volume now exists, and on which node: its home. Its data lives in that node's data directory only, so
/// a container that uses it is placed there and is not moved off it (see docs/ARCHITECTURE.md, "Volumes").
/// <paramref name="Reason"/> says how the node was chosen (<c>--opt node=</c>, the scheduler, a container's placement).
/// </summary>
[MessagePackObject(true)]
public sealed record VolumeCreated(string Name, string Node, IReadOnlyDictionary<string, string> Labels,
    IReadOnlyDictionary<string, string> Options, string Reason, DateTimeOffset At) : IVolumeEvent;

/// <summary>The volume and its data on <paramref name="Node"/> are gone.</summary>
[MessagePackObject(true)]
public sealed record VolumeRemoved(string Name, string Node, DateTimeOffset At) : IVolumeEvent;
