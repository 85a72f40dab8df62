using Flotilla.Cluster.Containers;
using Flotilla.Cluster.Images;
using Flotilla.Cluster.Nodes;
using Flotilla.Cluster.Registry;
using Flotilla.Contracts.Containers;
using Flotilla.Contracts.Images;
using Flotilla.Contracts.Nodes;
using Flotilla.Contracts.Registry;
using Flotilla.Contracts.Security;
using JasperFx;
using JasperFx.Events;
using JasperFx.Events.Projections;
using Marten;
using Marten.Schema;
using Weasel.Core;

namespace Flotilla.Cluster.EventStore;

/// <summary>The one place Marten is configured: string streams, metadata, projections.</summary>
public static class FlotillaStore
{
    public const string DefaultSchema = "flotilla";
    public const string ContainerNameIndex = "mt_doc_containerview_uidx_name";

    /// <param name="uniqueContainerNames">Off only for <see cref="Containers.ContainerNameRepair"/>, which renames the
    /// containers of an older store that share a name so the unique index can be made.</param>
    /// <param name="identity">A restricted identity never changes the schema (the admin's migration made it).</param>
    public static void Configure(StoreOptions opts, string connectionString, string schema = DefaultSchema, bool uniqueContainerNames = true,
        DatabaseIdentity identity = DatabaseIdentity.Admin)
    {
        opts.Connection(connectionString);
        opts.DatabaseSchemaName = schema;
        opts.AutoCreateSchemaObjects = identity == DatabaseIdentity.Admin ? AutoCreate.CreateOrUpdate : AutoCreate.None;
        opts.UseSystemTextJsonForSerialization(EnumStorage.AsString);

        opts.Events.StreamIdentity = StreamIdentity.AsString;
        // Rich appends: the row keeps the timestamp the journal gives it (this host's clock, the time its hash covers).
        opts.Events.AppendMode = EventAppendMode.Rich;
        opts.Events.MetadataConfig.CorrelationIdEnabled = true;
        opts.Events.MetadataConfig.CausationIdEnabled = true;
        opts.Events.MetadataConfig.HeadersEnabled = true;
        opts.Events.MetadataConfig.UserNameEnabled = true;
        // The audit trail filters by event type; its other indexes are made by AuditQuery and must survive migrations.
        opts.Events.EnableEventTypeIndex = true;
        foreach (var index in Audit.AuditQuery.IndexNames) opts.Events.IgnoreIndex(index);

        opts.Events.AddEventType<NodeJoined>();
        opts.Events.AddEventType<Contracts.Volumes.VolumeCreated>();
        opts.Events.AddEventType<Contracts.Volumes.VolumeRemoved>();
        opts.Events.AddEventType<NodeLeft>();
        opts.Events.AddEventType<NodeDrained>();
        opts.Events.AddEventType<NodeActivated>();
        opts.Events.AddEventType<RuntimeRequestRefused>();
        opts.Events.AddEventType<ContainerPlaced>();
        opts.Events.AddEventType<ContainerRescheduled>();
        opts.Events.AddEventType<ContainerNodeLost>();
        opts.Events.AddEventType<ContainerHealthChanged>();
        opts.Events.AddEventType<ContainerCreated>();
        opts.Events.AddEventType<ContainerRenamed>();
        opts.Events.AddEventType<ContainerStarted>();
        opts.Events.AddEventType<ContainerStartFailed>();
        opts.Events.AddEventType<ContainerExited>();
        opts.Events.AddEventType<ContainerStopped>();
        opts.Events.AddEventType<ContainerKilled>();
        opts.Events.AddEventType<ContainerRestarted>();
        opts.Events.AddEventType<ContainerPaused>();
        opts.Events.AddEventType<ContainerUnpaused>();
        opts.Events.AddEventType<ContainerExecStarted>();
        opts.Events.AddEventType<ContainerCommitted>();
        opts.Events.AddEventType<ContainerExported>();
        opts.Events.AddEventType<ContainerRemoved>();
        opts.Events.AddEventType<ImageRegistered>();
        opts.Events.AddEventType<ImageTagged>();
        opts.Events.AddEventType<ImageUntagged>();
        opts.Events.AddEventType<ImageRemoved>();
        opts.Events.AddEventType<RegistryUserAdded>();
        opts.Events.AddEventType<RegistryUserPasswordChanged>();
        opts.Events.AddEventType<RegistryUserRemoved>();
        opts.Events.AddEventType<RegistryAccessDenied>();
        opts.Events.AddEventType<RegistryScopesDenied>();
        opts.Events.AddEventType<RegistryUserPasswordRehashed>();
        opts.Events.AddEventType<Contracts.Access.ApiAccessDenied>();
        opts.Events.AddEventType<ClusterAccessDenied>();
        opts.Events.AddEventType<ClusterMemberEnrolled>();
        opts.Events.AddEventType<BlobLinked>();
        opts.Events.AddEventType<BlobUnlinked>();
        opts.Events.AddEventType<ManifestPushed>();
        opts.Events.AddEventType<ManifestTagged>();
        opts.Events.AddEventType<TagDeleted>();
        opts.Events.AddEventType<ManifestDeleted>();
        opts.Events.AddEventType<ImagePulled>();
        opts.Events.AddEventType<ImageReplicated>();
        opts.Events.AddEventType<ImagePushed>();

        opts.Projections.Add<NodeViewProjection>(ProjectionLifecycle.Inline);
        opts.Projections.Add<ContainerViewProjection>(ProjectionLifecycle.Inline);
        opts.Projections.Add<ImageViewProjection>(ProjectionLifecycle.Inline);
        opts.Projections.Add<RegistryUserViewProjection>(ProjectionLifecycle.Inline);
        // Keep Projections (below) in step: `flotilla replay` rebuilds exactly those.
        opts.Projections.Add<RepositoryViewProjection>(ProjectionLifecycle.Inline);
        opts.Projections.Add<Volumes.VolumeViewProjection>(ProjectionLifecycle.Inline);
        // Name resolution looks images up by id prefix and by reference.
        opts.Schema.For<ImageView>().Index(x => x.ImageId);
        opts.Schema.For<Audit.AuditCheckpoint>();
        // One document per cluster: the key every gateway signs registry tokens with.
        opts.Schema.For<RegistryTokenKey>();
        // Docker's unique container names, enforced by the store: a create or rename whose name is taken fails its
        // append (UniqueValueTakenException), so no read before it and no race between two gateways.
        if (uniqueContainerNames)
            opts.Schema.For<ContainerView>().Index(x => x.ContainerId).UniqueIndex(UniqueIndexType.Computed, ContainerNameIndex, x => x.Name);
        else
            opts.Schema.For<ContainerView>().Index(x => x.ContainerId).Index(x => x.Name);
    }

    /// <summary>Every read model folded from the events, for <see cref="Audit.ProjectionReplay"/>.</summary>
    public static readonly IReadOnlyList<Type> Projections =
        [typeof(NodeViewProjection), typeof(ContainerViewProjection), typeof(ImageViewProjection), typeof(RegistryUserViewProjection),
         typeof(RepositoryViewProjection), typeof(Volumes.VolumeViewProjection)];

    /// <summary>A standalone store (CLI tools, benchmarks, tests); the host uses DI instead.</summary>
    public static DocumentStore Create(string connectionString, string schema = DefaultSchema, bool uniqueContainerNames = true,
        DatabaseIdentity identity = DatabaseIdentity.Admin) =>
        DocumentStore.For(o => Configure(o, connectionString, schema, uniqueContainerNames, identity));
}
