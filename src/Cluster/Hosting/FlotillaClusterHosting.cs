using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Cluster.Hosting.SBR;
using Akka.Event;
using Akka.Hosting;
using Akka.Remote.Hosting;
using Flotilla.Cluster.Containers;
using Flotilla.Cluster.EventStore;
using Flotilla.Cluster.Images;
using Flotilla.Cluster.Nodes;
using Flotilla.Cluster.Queries;
using Flotilla.Cluster.Registry;
using Flotilla.Cluster.Serialization;
using Flotilla.Contracts.Wire;
using Flotilla.NodeRuntime;
using Flotilla.NodeRuntime.Containers;
using Marten;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;

namespace Flotilla.Cluster.Hosting;

/// <summary>Marker type for the node agent in Akka.Hosting's actor registry.</summary>
public sealed class NodeAgentKey;

/// <summary>
/// The one composition of the cluster side: Marten, the journal, and the actor system with
/// remoting, clustering (keep-majority SBR), sharding regions and the node agent.
/// </summary>
public static class FlotillaClusterHosting
{
    public const string ActorSystemName = "flotilla";

    public static IServiceCollection AddFlotillaCluster(this IServiceCollection services, FlotillaClusterOptions options,
        NodeDescription self)
    {
        if (options.Tls is null && !IsLoopback(options.BindHost))
            throw new ArgumentException($"the cluster transport on {options.BindHost} needs the cluster certificates (plain TCP only on loopback)");
        services.AddSingleton(options);
        services.AddSingleton<Security.ClusterAccessLog>();
        services.AddHostedService(sp => sp.GetRequiredService<Security.ClusterAccessLog>());
        services.AddSingleton(self);
        var admin = options.DatabaseIdentity == DatabaseIdentity.Admin;
        var marten = services.AddMarten(sp =>
            {
                var store = new StoreOptions();
                FlotillaStore.Configure(store, options.PostgresConnectionString, options.Schema, identity: options.DatabaseIdentity);
                store.Logger(new MartenLog((sp.GetService<Microsoft.Extensions.Logging.ILoggerFactory>() ?? Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance).CreateLogger("Flotilla.EventStore.Marten")));
                return store;
            });
        services.AddSingleton<Audit.AuditQuery>();
        // Only the admin identity changes the schema; a node's or gateway's restricted role only uses it.
        if (admin)
        {
            marten.ApplyAllDatabaseChangesOnStartup();
            // First of all hosted services (they start in order, and Marten may put its start-up migration first): that
            // migration makes the unique name index, which an older store's shared names would stop.
            services.Insert(0, ServiceDescriptor.Singleton<IHostedService, ContainerNameRepair>());
            services.AddHostedService<Audit.AuditIndexes>();
            services.AddHostedService<DatabaseRolesGrant>();
        }
        services.AddSingleton<Audit.AuditSubjects>();
        services.AddSingleton<Audit.TimeTravel>();
        services.AddSingleton<IEventJournal, MartenEventJournal>();
        services.AddSingleton<IRuntimeDirectory>(sp => new RuntimeDirectory(sp.GetRequiredService<ActorSystem>, sp.GetRequiredService<ClusterQueries>(), options.NodeName));
        services.TryAddSingleton(CommandTimeouts.Default);
        services.AddSingleton(sp => new EntityHost(sp.GetRequiredService<IEventJournal>(), options.NodeName, sp.GetRequiredService<IRuntimeDirectory>())
        {
            Timeouts = sp.GetRequiredService<CommandTimeouts>(),
        });
        services.AddSingleton<ClusterQueries>();
        services.AddSingleton<ImageService>();
        services.AddSingleton(sp => new Registry.RegistryUserService(sp.GetRequiredService<Marten.IDocumentStore>(),
            sp.GetRequiredService<IEventJournal>(), options.NodeName));
        services.AddSingleton<Scheduling.PlacementService>();
        services.AddSingleton(sp => new Volumes.VolumeRegistry(sp.GetRequiredService<Marten.IDocumentStore>(),
            sp.GetRequiredService<IEventJournal>(), options.NodeName));
        services.AddSingleton<ContainerService>();
        services.AddSingleton<Nodes.NodeService>();
        services.AddSingleton<Nodes.HostLeaseStore>();
        services.TryAddSingleton(Nodes.LeaseTiming.Default);
        // Image distribution between hosts: a host that lacks an image's blobs fetches them from its peers.
        services.AddSingleton(sp => new NodeRuntime.Distribution.PeerBlobFetcher(sp.GetRequiredService<NodeRuntime.Images.NodeImageStore>().Content,
            handler => Security.ClusterHttps.Configure(handler, options.Tls)));
        services.AddSingleton<NodeRuntime.Images.IImageContentSource, PeerImageFetcher>();
        if (options.AuditKeyFile is { } auditKey) services.AddSingleton(_ => Audit.AuditCheckpointKey.LoadOrCreate(auditKey));
        services.AddSingleton(sp => new Audit.AuditLedger(sp.GetRequiredService<IDocumentStore>(), sp.GetService<Audit.AuditCheckpointKey>()));
        services.AddSingleton<Audit.ProjectionReplay>();
        services.AddSingleton(sp => new Audit.ApiAccessLog(sp.GetRequiredService<IEventJournal>(), options.NodeName));
        // Needs a RegistryBlobStore from the host (the all-in-one host registers one under <data>/registry).
        services.AddSingleton<RegistryService>();

        services.AddAkka(ActorSystemName, (builder, sp) => ConfigureActorSystem(builder, sp, options, self));
        return services;
    }

    public static void ConfigureActorSystem(AkkaConfigurationBuilder builder, IServiceProvider sp,
        FlotillaClusterOptions options, NodeDescription self)
    {
        var host = sp.GetRequiredService<EntityHost>();
        var isNode = options.HasRole(FlotillaClusterOptions.NodeRole);

        builder
            .AddHocon(ClusterHocon(options), HoconAddMode.Prepend)
            // Akka's events go to the host's loggers (the process's console, at its --log-level), not to stdout.
            .ConfigureLoggers(logging =>
            {
                logging.LogLevel = AkkaEventLevel(options.LogLevel);
                logging.ClearLoggers();
                logging.AddLoggerFactory();
            })
            .WithCustomSerializer("flotilla-msgpack", [typeof(IFlotillaMessage)], system => new MessagePackAkkaSerializer(system))
            .WithRemoting(RemoteOptionsFor(options, sp.GetRequiredService<Security.ClusterAccessLog>()))
            .WithClustering(new ClusterOptions
            {
                Roles = [.. options.Roles],
                SeedNodes = [.. options.Seeds.Select(s => $"{options.Protocol}://{ActorSystemName}@{s}")],
                // Only hosts count for the majority: gateways come and go without deciding who survives a partition.
                SplitBrainResolver = new KeepMajorityOption { Role = FlotillaClusterOptions.NodeRole },
            });
        if (options.Tls is not null)
            builder.AddStartup((system, _) =>
            {
                var access = sp.GetRequiredService<Security.ClusterAccessLog>();
                var watcher = system.ActorOf(Props.Create(() => new Security.PlainTransportWatcher(access)), "plain-transport-watcher");
                system.EventStream.Subscribe(watcher, typeof(Akka.Event.Error));
            });

        var shardOptions = new ShardOptions
        {
            Role = FlotillaClusterOptions.NodeRole,
            StateStoreMode = Akka.Cluster.Sharding.StateStoreMode.DData,
            RememberEntities = false,
        };
        if (isNode)
        {
            builder
                .WithShardRegion<ContainerEntity>(ContainerEntity.RegionName,
                    (_, _) => id => ContainerEntity.PropsFor(host, id), new ContainerMessageExtractor(), shardOptions)
                .WithShardRegion<ImageEntity>(ImageEntity.RegionName,
                    (_, _) => id => ImageEntity.PropsFor(host, id), new ImageMessageExtractor(), shardOptions)
                .WithShardRegion<RepositoryEntity>(RepositoryEntity.RegionName,
                    (_, _) => id => RepositoryEntity.PropsFor(host, id), new RepositoryMessageExtractor(), shardOptions)
                .WithSingleton<ContainerRevival>(ContainerRevival.SingletonName,
                    (_, registry, _) => ContainerRevival.PropsFor(sp.GetRequiredService<ClusterQueries>(), registry.Get<ContainerEntity>()),
                    new ClusterSingletonOptions { Role = FlotillaClusterOptions.NodeRole }, createProxyToo: false)
                .WithSingleton<Scheduling.Scheduler>(Scheduling.Scheduler.SingletonName,
                    (_, registry, _) => Scheduling.Scheduler.PropsFor(sp.GetRequiredService<ClusterQueries>(), sp.GetRequiredService<Nodes.HostLeaseStore>(),
                        host.Journal, sp.GetRequiredService<Nodes.LeaseTiming>(), registry.Get<ContainerEntity>(),
                        options.PlacementStrategy, failover: options.HandsOverContainers),
                    new ClusterSingletonOptions { Role = FlotillaClusterOptions.NodeRole }, createProxyToo: true);
        }
        else
        {
            builder
                .WithShardRegionProxy<ContainerEntity>(ContainerEntity.RegionName, FlotillaClusterOptions.NodeRole, new ContainerMessageExtractor())
                .WithShardRegionProxy<ImageEntity>(ImageEntity.RegionName, FlotillaClusterOptions.NodeRole, new ImageMessageExtractor())
                .WithShardRegionProxy<RepositoryEntity>(RepositoryEntity.RegionName, FlotillaClusterOptions.NodeRole, new RepositoryMessageExtractor())
                .WithSingletonProxy<Scheduling.Scheduler>(Scheduling.Scheduler.SingletonName,
                    new ClusterSingletonOptions { Role = FlotillaClusterOptions.NodeRole });
        }
        // On gateways: a checkpoint covers every event, and a node's database role does not see the registry users' ones.
        if (options.HasRole(FlotillaClusterOptions.GatewayRole))
            builder.WithSingleton<Audit.AuditCheckpointer>(Audit.AuditCheckpointer.SingletonName,
                (_, _, _) => Audit.AuditCheckpointer.PropsFor(sp.GetRequiredService<Audit.AuditLedger>(), options.AuditCheckpointInterval),
                new ClusterSingletonOptions { Role = FlotillaClusterOptions.GatewayRole }, createProxyToo: false);

        builder.WithActors((system, registry) =>
        {
            var cluster = Akka.Cluster.Cluster.Get(system);
            if (options.Seeds.Count == 0) cluster.Join(cluster.SelfAddress);

            // The runtime actor does this host's container work; it reports exits to the container region.
            if (isNode && sp.GetService<NodeContainerRuntime>() is { } runtime)
            {
                // Work only from container entities (which live on node members), each for its own container.
                var callers = new RuntimeCallerPolicy(ContainerEntity.RegionName, address => cluster.State.Members.Any(m =>
                    m.Address == address && m.HasRole(FlotillaClusterOptions.NodeRole)
                    && m.Status is Akka.Cluster.MemberStatus.Up or Akka.Cluster.MemberStatus.Leaving or Akka.Cluster.MemberStatus.Exiting
                        or Akka.Cluster.MemberStatus.WeaklyUp));
                var refusals = new RuntimeAccessLog(host.Journal, options.NodeName);
                system.ActorOf(RuntimeActor.PropsFor(runtime, registry.Get<ContainerEntity>(), options.NodeName, callers,
                    refusal => refusals.RecordAsync(refusal), sp.GetService<NodeRuntime.Fencing.HostFence>()), RuntimeDirectory.RuntimeActorName);
                // A node that leaves or is downed (crash of the link, minority side of a partition) is replaced by the
                // scheduler: its containers are started elsewhere, so here they must stop before this process goes.
                if (options.HandsOverContainers)
                {
                    CoordinatedShutdown.Get(system).AddTask(CoordinatedShutdown.PhaseBeforeServiceUnbind, "hand-over-containers", async () =>
                    {
                        var downed = CoordinatedShutdown.Get(system).ShutdownReason is CoordinatedShutdown.ClusterDowningReason;
                        // No new run from here on (a restart policy would start one while the others stop).
                        sp.GetService<NodeRuntime.Fencing.HostFence>()?.Revoke("the node is leaving the cluster");
                        // Downed: the survivors are starting these already, so no grace period to speak of.
                        var stopped = await runtime.StopAllAsync(TimeSpan.FromSeconds(downed ? 1 : 5));
                        system.Log.Warning("Node {0} leaves the cluster: stopped its {1} running container(s)", options.NodeName, stopped);
                        // Nothing runs here any more: end the lease now, so the scheduler need not wait for it to expire.
                        if (sp.GetService<Nodes.HostLeaseKeeper>() is { } lease)
                        {
                            using var release = new CancellationTokenSource(TimeSpan.FromSeconds(3));
                            await lease.ReleaseAsync(release.Token);
                        }
                        return Akka.Done.Instance;
                    });
                }
            }

            // Every process registers (nodes with their capacity, gateways so their endpoint can serve image blobs)
            // once its member is Up, so its address is final and the journal is ready.
            var queries = sp.GetRequiredService<ClusterQueries>();
            cluster.RegisterOnMemberUp(() =>
            {
                var agent = system.ActorOf(NodeAgent.PropsFor(host, self, queries), "node-agent");
                registry.TryRegister<NodeAgentKey>(agent);
            });
            CoordinatedShutdown.Get(system).AddTask(CoordinatedShutdown.PhaseBeforeClusterShutdown, "record-node-left", async () =>
            {
                if (!registry.TryGet<NodeAgentKey>(out var agent)) return Akka.Done.Instance;
                try
                {
                    await agent.Ask<Akka.Done>(new NodeAgent.RecordLeave("stopped"), TimeSpan.FromSeconds(5));
                }
                catch (Exception ex)
                {
                    system.Log.Warning("Could not record that node {0} left: {1}", options.NodeName, ex.Message);
                }
                return Akka.Done.Instance;
            });
        });
    }

    /// <summary>
    /// TLS with required client certificates, every peer checked against the cluster CA by <see cref="Security.ClusterTls"/>
    /// (not the system trust store, not the host name: members dial each other by IP and are known by certificate).
    /// A refused handshake is logged and recorded with the peer's address.
    /// </summary>
    private static RemoteOptions RemoteOptionsFor(FlotillaClusterOptions options, Security.ClusterAccessLog access)
    {
        var remote = new RemoteOptions { HostName = options.BindHost, Port = options.BindPort };
        if (options.Tls is not { } tls) return remote;
        remote.EnableSsl = true;
        remote.Ssl = new SslOptions
        {
            X509Certificate = tls.Certificate,
            SuppressValidation = false,
            RequireMutualAuthentication = true,
            ValidateCertificateHostname = false,
            CustomValidator = (certificate, _, remotePeer, _, _) =>
            {
                var check = tls.Verify(certificate);
                if (!check.Trusted) access.Refused(Flotilla.Contracts.Security.ClusterSurfaces.Transport, remotePeer, certificate?.Subject, check.Refusal!);
                return check.Trusted;
            },
        };
        return remote;
    }

    private static string AkkaLevel(Microsoft.Extensions.Logging.LogLevel level) => level switch
    {
        <= Microsoft.Extensions.Logging.LogLevel.Debug => "DEBUG",
        Microsoft.Extensions.Logging.LogLevel.Information => "INFO",
        Microsoft.Extensions.Logging.LogLevel.Warning => "WARNING",
        _ => "ERROR",
    };

    private static Akka.Event.LogLevel AkkaEventLevel(Microsoft.Extensions.Logging.LogLevel level) => level switch
    {
        <= Microsoft.Extensions.Logging.LogLevel.Debug => Akka.Event.LogLevel.DebugLevel,
        Microsoft.Extensions.Logging.LogLevel.Information => Akka.Event.LogLevel.InfoLevel,
        Microsoft.Extensions.Logging.LogLevel.Warning => Akka.Event.LogLevel.WarningLevel,
        _ => Akka.Event.LogLevel.ErrorLevel,
    };

    private static bool IsLoopback(string host) =>
        host is "localhost" || (System.Net.IPAddress.TryParse(host, out var ip) && System.Net.IPAddress.IsLoopback(ip));

    private static string ClusterHocon(FlotillaClusterOptions options) => $$"""
        akka {
          # The logger itself (the host's ILoggerFactory) is set in ConfigureActorSystem; before it starts and after
          # it stops Akka writes to stdout, at the same level.
          stdout-loglevel = {{AkkaLevel(options.LogLevel)}}
          actor.serialize-messages = off
          cluster {
            # LMDB durable storage fails on this stack, and what must run is rebuilt from Marten anyway.
            sharding.distributed-data.durable.keys = []
            # A region asks again for a shard's home after this long when the coordinator did not answer (default 2 s).
            # After a member is removed the coordinator ignores requests for that member's shards until it has
            # processed the removal (down-removal-margin later), so the first move of each such container waits
            # one retry: 2 s by default.
            sharding.retry-interval = 250ms
            split-brain-resolver.stable-after = {{(int)options.StableAfter.TotalMilliseconds}}ms
            # A peer is unreachable after this much silence (phi accrual): short enough for fast failover,
            # long enough that a 1 s network blip moves nothing.
            failure-detector {
              heartbeat-interval = {{(int)options.HeartbeatInterval.TotalMilliseconds}}ms
              acceptable-heartbeat-pause = {{(int)options.AcceptableHeartbeatPause.TotalMilliseconds}}ms
            }
            # How often each member turns its failure detector's verdicts into "unreachable" (default 1 s): the
            # resolver's clock only starts then.
            unreachable-nodes-reaper-interval = 250ms
            log-info = off
            # Removal of a downed member (after which its shards and containers move) waits for the leader's next pass.
            leader-actions-interval = 200ms
            # A downed member is removed once every reachable member has seen the down (gossip convergence, one
            # random peer per round).
            gossip-interval = 200ms
            # Shards and singletons of a removed member start on the survivors after this margin (default: the
            # resolver's stable-after). The cut-off side downs itself at the same moment and the event store's version
            # check fences any entity still alive there, so a short margin is safe and saves most of a second.
            down-removal-margin = 250ms
            # The proxy's "failed to find an associated singleton … after 30 seconds" fires the moment it starts
            # (its timer's first tick has no delay), on every start: noise unless debugging.
            singleton-proxy.log-singleton-identification-failure = {{(options.LogLevel <= Microsoft.Extensions.Logging.LogLevel.Debug ? "on" : "off")}}
          }
          coordinated-shutdown.exit-clr = off
          # The host stops the actor system (Akka.Hosting's StopAsync), alongside its other services: run from the
          # process-exit hook it ran first and alone, and the web listeners began to stop only after it.
          coordinated-shutdown.run-by-clr-shutdown-hook = off
          # Stopping a node's containers (TERM, then KILL after the grace period) happens in this phase.
          coordinated-shutdown.phases.before-service-unbind.timeout = 20s
        }
        """;
}
