using Flotilla.Contracts.Wire;
using MessagePack;

namespace Flotilla.Contracts.Containers;

/// <summary>
/// Asks the scheduler for a node for a new container: its reservations (<c>-m</c>, <c>--cpus</c>) and constraints
/// (Swarm-classic expressions such as <c>node==n1</c>, <c>disk==ssd</c>, <c>node!=n2</c>). Answered with
/// <see cref="PlacementDecision"/> or <see cref="PlacementRefused"/>.
/// </summary>
[MessagePackObject(true)]
public sealed record PlaceContainer(string ContainerId, long MemoryBytes, long NanoCpus, IReadOnlyList<string> Constraints, string? Strategy)
    : IFlotillaMessage;

/// <summary>Where the container goes, and why.</summary>
[MessagePackObject(true)]
public sealed record PlacementDecision(string Node, string Strategy, string Reason) : IFlotillaMessage;

[MessagePackObject(true)]
public sealed record PlacementRefused(string Reason) : IFlotillaMessage;

/// <summary>
/// The placement of a container that was never created (its name was taken, say): the scheduler stops holding its
/// reservation instead of waiting for it to lapse. No answer.
/// </summary>
[MessagePackObject(true)]
public sealed record ReleasePlacement(string ContainerId) : IFlotillaMessage;

/// <summary>
/// The container placed by a <see cref="PlaceContainer"/> is now stored: from here on a read of the placed containers
/// that lacks it means it is gone, and the scheduler stops counting its place. No answer.
/// </summary>
[MessagePackObject(true)]
public sealed record PlacementRecorded(string ContainerId) : IFlotillaMessage;
