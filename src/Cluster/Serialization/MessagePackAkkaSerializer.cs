using Akka.Actor;
using Akka.Serialization;
using Flotilla.Contracts.Wire;
using MessagePack;
using MessagePack.Resolvers;
using SerializationException = System.Runtime.Serialization.SerializationException;

namespace Flotilla.Cluster.Serialization;

/// <summary>
/// Akka serializer for every <see cref="IFlotillaMessage"/>: MessagePack payload,
/// manifest from the stable <see cref="WireManifest"/> table. Peers are other cluster
/// members, but payloads are still decoded with <see cref="MessagePackSecurity.UntrustedData"/>.
/// </summary>
public sealed class MessagePackAkkaSerializer(ExtendedActorSystem system) : SerializerWithStringManifest(system)
{
    public const int SerializerId = 487;

    public static readonly MessagePackSerializerOptions Options = MessagePackSerializerOptions.Standard
        .WithResolver(StandardResolver.Instance)
        .WithSecurity(MessagePackSecurity.UntrustedData);

    private static long _serialized;
    private static long _deserialized;

    /// <summary>Process-wide call counts, so cluster tests can prove messages crossed the wire through here.</summary>
    public static (long Serialized, long Deserialized) Calls => (Interlocked.Read(ref _serialized), Interlocked.Read(ref _deserialized));

    public override int Identifier => SerializerId;

    public override string Manifest(object o) =>
        WireManifest.CodeOf.TryGetValue(o.GetType(), out var code)
            ? code
            : throw new ArgumentException($"{o.GetType().FullName} has no entry in {nameof(WireManifest)}");

    public override byte[] ToBinary(object obj)
    {
        Interlocked.Increment(ref _serialized);
        return MessagePackSerializer.Serialize(obj.GetType(), obj, Options);
    }

    public override object FromBinary(byte[] bytes, string manifest)
    {
        if (!WireManifest.TypeOf.TryGetValue(manifest, out var type))
            throw new SerializationException($"Unknown Flotilla wire manifest '{manifest}'");
        Interlocked.Increment(ref _deserialized);
        return MessagePackSerializer.Deserialize(type, bytes, Options)
            ?? throw new SerializationException($"Empty payload for manifest '{manifest}'");
    }
}
