using Akka.Actor;
using Akka.Actor.Setup;
using Akka.Cluster;
using Akka.Configuration;
using Akka.Remote.Transport.DotNetty;
using Flotilla.Cluster.EventStore;
using Flotilla.Cluster.Hosting;
using Flotilla.Cluster.Nodes;
using Flotilla.Cluster.Security;
using Flotilla.Contracts.Security;
using Flotilla.Tests.Infrastructure;
using Flotilla.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Xunit;
using Xunit.Abstractions;

namespace Flotilla.Tests.Security;

/// <summary>
/// Intruders on the cluster transport (Akka.Remote): two real members with certificates of one cluster CA form a
/// cluster over TLS; a foreign actor system — plain TCP, or TLS with a CA it made itself — can neither resolve
/// <c>/user/runtime</c> nor join, and its handshakes are recorded as <see cref="ClusterAccessDenied"/>. A stranger
/// holding a certificate of the real CA can (the control: the intruders fail for want of a certificate, not for a
/// broken probe), and without TLS the same plain probe gets in (what the cluster was before).
/// </summary>
[Collection("postgres")]
public class ClusterTransportIntruderSpec(PostgresFixture postgres, ITestOutputHelper output)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(20);

    private sealed class Echo : ReceiveActor
    {
        public Echo() => ReceiveAny(m => Sender.Tell(m));
    }

    private static IHost BuildMember(string name, int port, int seedPort, string connectionString, ClusterTls? tls)
    {
        var options = new FlotillaClusterOptions
        {
            NodeName = name,
            Roles = [FlotillaClusterOptions.NodeRole],
            BindHost = "127.0.0.1",
            BindPort = port,
            Seeds = [$"127.0.0.1:{seedPort}"],
            PostgresConnectionString = connectionString,
            StableAfter = TimeSpan.FromSeconds(2),
            Tls = tls,
        };
        var self = new NodeDescription(name, "test-host", options.Roles, 2, 1L << 30, "test-kernel", "runc test", new Dictionary<string, string>());
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddFlotillaCluster(options, self);
        return builder.Build();
    }

    /// <summary>A bare actor system that is no member: plain TCP, or TLS with the given certificate.</summary>
    private static ActorSystem Stranger(X509Identity? tls, bool cluster = false)
    {
        var config = ConfigurationFactory.ParseString($$"""
            akka.actor.provider = {{(cluster ? "cluster" : "remote")}}
            akka.loglevel = WARNING
            akka.remote.dot-netty.tcp { hostname = 127.0.0.1, port = 0, enable-ssl = {{(tls is null ? "false" : "true")}} }
            akka.remote.retry-gate-closed-for = 200ms
            """);
        var setup = BootstrapSetup.Create().WithConfig(config);
        return tls is null
            ? ActorSystem.Create(FlotillaClusterHosting.ActorSystemName, setup)
            : ActorSystem.Create(FlotillaClusterHosting.ActorSystemName,
                ActorSystemSetup.Create(setup, new DotNettySslSetup(tls.Certificate, suppressValidation: true, requireMutualAuthentication: true)));
    }

    private sealed record X509Identity(System.Security.Cryptography.X509Certificates.X509Certificate2 Certificate);

    private static async Task<bool> CanResolveAsync(ActorSystem stranger, string address)
    {
        try
        {
            await stranger.ActorSelection($"{address}/user/runtime").ResolveOne(TimeSpan.FromSeconds(3));
            return true;
        }
        catch (ActorNotFoundException)
        {
            return false;
        }
    }

    [Fact]
    public async Task Strangers_without_a_certificate_of_the_cluster_CA_cannot_resolve_actors_or_join_and_are_recorded()
    {
        var connectionString = await postgres.NewDatabaseAsync("transport_intruder");
        using var ca = ClusterCa.Create();
        ClusterTls Member(string name) => new(ca.Issue(ClusterRole.Node, name, ["127.0.0.1"]), ca.Certificate);
        var portA = FreePort.Next();
        var portB = FreePort.Next();
        using var a = BuildMember("node-a", portA, portA, connectionString, Member("node-a"));
        using var b = BuildMember("node-b", portB, portA, connectionString, Member("node-b"));
        await a.StartAsync();
        await b.StartAsync();
        try
        {
            var systemA = a.Services.GetRequiredService<ActorSystem>();
            systemA.ActorOf(Props.Create(() => new Echo()), "runtime");
            Assert.True(await Eventually.TrueAsync(() => Task.FromResult(
                Akka.Cluster.Cluster.Get(systemA).State.Members.Count(m => m.Status == MemberStatus.Up) == 2), Wait), "the members form over TLS");
            Assert.All(Akka.Cluster.Cluster.Get(systemA).State.Members, m => Assert.Equal("akka.ssl.tcp", m.Address.Protocol));

            var tlsAddress = $"akka.ssl.tcp://flotilla@127.0.0.1:{portA}";
            using (var plain = Stranger(null))
            {
                Assert.False(await CanResolveAsync(plain, $"akka.tcp://flotilla@127.0.0.1:{portA}"), "plain TCP resolves /user/runtime");
                await plain.Terminate();
            }
            using var foreignCa = ClusterCa.Create("a CA the intruder made");
            using (var selfSigned = Stranger(new X509Identity(ClusterPkiFiles.Reload(foreignCa.Issue(ClusterRole.Gateway, "intruder", ["127.0.0.1"])))))
            {
                Assert.False(await CanResolveAsync(selfSigned, tlsAddress), "TLS with a foreign CA resolves /user/runtime");
                await selfSigned.Terminate();
            }
            using (var joiner = Stranger(new X509Identity(ClusterPkiFiles.Reload(foreignCa.Issue(ClusterRole.Node, "intruder", ["127.0.0.1"]))), cluster: true))
            {
                Akka.Cluster.Cluster.Get(joiner).Join(Address.Parse(tlsAddress));
                await Task.Delay(TimeSpan.FromSeconds(4));
                Assert.Equal(2, Akka.Cluster.Cluster.Get(systemA).State.Members.Count);
                Assert.NotEqual(MemberStatus.Up, Akka.Cluster.Cluster.Get(joiner).SelfMember.Status);
                await joiner.Terminate();
            }

            // Control: the same probe with a certificate of the cluster CA gets through, so the refusals above are the CA's doing.
            using (var insider = Stranger(new X509Identity(ca.Issue(ClusterRole.Gateway, "insider", ["127.0.0.1"]))))
            {
                // Retried: a loaded machine (the whole suite) can take longer than one 3 s resolve for a new system's
                // first TLS association.
                Assert.True(await Eventually.TrueAsync(() => CanResolveAsync(insider, tlsAddress), Wait), "a holder of a cluster certificate resolves /user/runtime");
                await insider.Terminate();
            }

            var journal = a.Services.GetRequiredService<IEventJournal>();
            List<ClusterAccessDenied> denials = [];
            Assert.True(await Eventually.TrueAsync(async () =>
            {
                denials = [.. (await journal.ReadAsync(ClusterAccessStreams.Key("node-a"))).Events.OfType<ClusterAccessDenied>()];
                return denials.Any(d => d.Subject?.Contains("intruder") == true);
            }, Wait), "the foreign-CA handshake is recorded");
            foreach (var d in denials) output.WriteLine($"{d.Surface} {d.RemoteAddress} {d.Subject}: {d.Reason} (+{d.Repeats})");
            Assert.All(denials, d => Assert.Equal(ClusterSurfaces.Transport, d.Surface));
        }
        finally
        {
            await b.StopAsync();
            await a.StopAsync();
        }
    }

    [Fact]
    public async Task Without_TLS_the_same_plain_probe_resolves_the_runtime()
    {
        var connectionString = await postgres.NewDatabaseAsync("transport_plain");
        var port = FreePort.Next();
        using var a = BuildMember("node-a", port, port, connectionString, tls: null);
        await a.StartAsync();
        try
        {
            a.Services.GetRequiredService<ActorSystem>().ActorOf(Props.Create(() => new Echo()), "runtime");
            using var plain = Stranger(null);
            Assert.True(await CanResolveAsync(plain, $"akka.tcp://flotilla@127.0.0.1:{port}"));
            await plain.Terminate();
        }
        finally
        {
            await a.StopAsync();
        }
    }
}
