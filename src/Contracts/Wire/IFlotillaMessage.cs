namespace Flotilla.Contracts.Wire;

/// <summary>
/// Marker for everything that crosses the wire between cluster members. The
/// MessagePack Akka serializer is bound to this interface; every implementing type
/// needs an entry in <see cref="WireManifest"/>.
/// </summary>
public interface IFlotillaMessage;
