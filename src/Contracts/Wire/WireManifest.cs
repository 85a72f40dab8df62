using System.Collections.Frozen;
using Flotilla.Contracts.Containers;
using Flotilla.Contracts.Images;
using Flotilla.Contracts.Nodes;
using Flotilla.Contracts.Registry;

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
        (typeof(StartContainer), "c.start"),
        (typeof(StopContainer), "c.stop"),
        (typeof(KillContainer), "c.kill"),
        (typeof(RestartContainer), "c.restart"),
        (typeof(PauseContainer), "c.pause"),
        (typeof(UnpauseContainer), "c.unpause"),
        (typeof(RemoveContainer), "c.remove"),
        (typeof(RecordContainerExec), "c.exec"),
        (typeof(RecordContainerCommit), "c.commit"),
        (typeof(RecordContainerExport), "c.export"),
        (typeof(WaitForContainer), "c.wait"),
        (typeof(ContainerWaitResult), "c.waited"),
        (typeof(ContainerStarted), "c.started"),
        (typeof(ContainerStartFailed), "c.startfailed"),
        (typeof(ContainerExited), "c.exited"),
        (typeof(ContainerStopped), "c.stopped"),
        (typeof(ContainerKilled), "c.killed"),
        (typeof(ContainerRestarted), "c.restarted"),
        (typeof(ContainerPaused), "c.paused"),
        (typeof(ContainerUnpaused), "c.unpaused"),
        (typeof(ContainerExecStarted), "c.execstarted"),
        (typeof(ContainerCommitted), "c.committed"),
        (typeof(ContainerExported), "c.exported"),
        (typeof(ContainerRemoved), "c.removed"),
        (typeof(RunContainerProcess), "r.run"),
        (typeof(ContainerProcessStarted), "r.started"),
        (typeof(ContainerProcessFailed), "r.failed"),
        (typeof(SignalContainerProcess), "r.signal"),
        (typeof(StopContainerProcess), "r.stop"),
        (typeof(PauseContainerProcess), "r.pause"),
        (typeof(RemoveContainerFiles), "r.remove"),
        (typeof(ContainerProcessExited), "r.exited"),
        (typeof(RuntimeDone), "r.done"),
        (typeof(RuntimeFailed), "r.error"),
        (typeof(LinkBlob), "reg.link"),
        (typeof(UnlinkBlob), "reg.unlink"),
        (typeof(PushManifest), "reg.push"),
        (typeof(DeleteTag), "reg.deltag"),
        (typeof(DeleteManifest), "reg.delmanifest"),
        (typeof(RepositoryCommandAccepted), "reg.ok"),
        (typeof(RepositoryCommandRejected), "reg.rej"),
        (typeof(BlobLinked), "reg.linked"),
        (typeof(BlobUnlinked), "reg.unlinked"),
        (typeof(ManifestPushed), "reg.pushed"),
        (typeof(ManifestTagged), "reg.tagged"),
        (typeof(TagDeleted), "reg.tagdeleted"),
        (typeof(ManifestDeleted), "reg.manifestdeleted"),
        (typeof(RecordImageDistribution), "i.distribution"),
        (typeof(ImagePulled), "i.pulled"),
        (typeof(ImagePushed), "i.pushed"),
        (typeof(ContainerPlaced), "c.placed"),
        (typeof(ContainerRescheduled), "c.rescheduled"),
        (typeof(ContainerNodeLost), "c.nodelost"),
        (typeof(RescheduleContainer), "c.reschedule"),
        (typeof(MarkContainerNodeLost), "c.marklost"),
        (typeof(PlaceContainer), "s.place"),
        (typeof(PlacementDecision), "s.placed"),
        (typeof(PlacementRefused), "s.refused"),
        (typeof(ReleasePlacement), "s.release"),
        (typeof(PlacementRecorded), "s.recorded"),
        (typeof(NodeDrained), "n.drained"),
        (typeof(NodeActivated), "n.activated"),
        (typeof(HostLeaseAcquired), "n.lease"),
        (typeof(HostLeaseExpired), "n.lease-expired"),
        (typeof(ContainersFenced), "n.fenced"),
        (typeof(Volumes.VolumeCreated), "v.created"),
        (typeof(Volumes.VolumeRemoved), "v.removed"),
        (typeof(RecordImageReplica), "i.replicate"),
        (typeof(ImageReplicated), "i.replicated"),
        (typeof(ContainerHealthChanged), "c.health"),
        (typeof(ContainerHealthProbed), "r.probed"),
    ];


    public static readonly FrozenDictionary<Type, string> CodeOf = Entries.ToFrozenDictionary(e => e.Type, e => e.Code);
    public static readonly FrozenDictionary<string, Type> TypeOf = Entries.ToFrozenDictionary(e => e.Code, e => e.Type);

    public static IEnumerable<Type> Types => Entries.Select(e => e.Type);
}
