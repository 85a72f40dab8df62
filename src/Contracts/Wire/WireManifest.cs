using System.Collections.Frozen;
using Flotilla.Contracts.Containers;
using Flotilla.Contracts.Images;
using Flotilla.Contracts.Nodes;

namespace Flotilla.Contracts.Wire;

/// <summary>
/// The stable manifest table of the wire format: one short code per message type.
/// Codes are part of the protocol between cluster members of different versions:
/// never reuse or renumber one; add new codes at the end.
/// </summary>
public static class WireManifest
{
    private static readonly (Type Type, string Code)[] Entries =
    [
        (typeof(CommandRejected), "rej"),
        (typeof(NodeJoined), "n.joined"),
        (typeof(NodeLeft), "n.left"),
        (typeof(CreateContainer), "c.create"),
        (typeof(RenameContainer), "c.rename"),
        (typeof(GetContainer), "c.get"),
        (typeof(ContainerSnapshot), "c.snap"),
        (typeof(ContainerCommandAccepted), "c.ok"),
        (typeof(ContainerCreated), "c.created"),
        (typeof(ContainerRenamed), "c.renamed"),
        (typeof(GetImage), "i.get"),
        (typeof(ImageSnapshot), "i.snap"),
        (typeof(ReconcileContainer), "c.reconcile"),
        (typeof(RegisterImage), "i.register"),
        (typeof(TagImage), "i.tag"),
        (typeof(UntagImage), "i.untag"),
        (typeof(RemoveImage), "i.remove"),
        (typeof(ImageCommandAccepted), "i.ok"),
        (typeof(ImageRegistered), "i.registered"),
        (typeof(ImageTagged), "i.tagged"),
        (typeof(ImageUntagged), "i.untagged"),
        (typeof(ImageRemoved), "i.removed"),
    ];

    public static readonly FrozenDictionary<Type, string> CodeOf = Entries.ToFrozenDictionary(e => e.Type, e => e.Code);
    public static readonly FrozenDictionary<string, Type> TypeOf = Entries.ToFrozenDictionary(e => e.Code, e => e.Type);

    public static IEnumerable<Type> Types => Entries.Select(e => e.Type);
}
