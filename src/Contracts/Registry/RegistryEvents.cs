using Flotilla.Contracts.Wire;
using MessagePack;

namespace Flotilla.Contracts.Registry;

/// <summary>An event in a registry repository's stream (<c>repository-&lt;name&gt;</c>).</summary>
[Union(0, typeof(BlobLinked))]
[Union(1, typeof(BlobUnlinked))]
[Union(2, typeof(ManifestPushed))]
[Union(3, typeof(ManifestTagged))]
[Union(4, typeof(TagDeleted))]
[Union(5, typeof(ManifestDeleted))]
public interface IRepositoryEvent : IFlotillaMessage
{
    string Repository { get; }
}

/// <summary>
/// A blob became part of the repository (uploaded into it, or mounted from another one). A blob is
/// only served through repositories it is linked to, as in distribution.
/// </summary>
/// <param name="Via"><c>upload</c>, or <c>mount from &lt;repository&gt;</c>.</param>
[MessagePackObject(true)]
public sealed record BlobLinked(string Repository, string Digest, long Size, string Via, DateTimeOffset At) : IRepositoryEvent;

/// <summary>The blob was deleted from the repository (<c>DELETE /v2/&lt;name&gt;/blobs/&lt;digest&gt;</c>).</summary>
[MessagePackObject(true)]
public sealed record BlobUnlinked(string Repository, string Digest, DateTimeOffset At) : IRepositoryEvent;

/// <summary>
/// A manifest (image manifest or index; its bytes are a blob named <paramref name="Digest"/>) was pushed.
/// <paramref name="References"/> are the blobs it needs (config, layers) and <paramref name="Children"/>
/// the manifests an index lists; both keep those blobs alive through registry GC.
/// </summary>
[MessagePackObject(true)]
public sealed record ManifestPushed(
    string Repository,
    string Digest,
    string MediaType,
    long Size,
    string? Subject,
    string? ArtifactType,
    IReadOnlyDictionary<string, string>? Annotations,
    IReadOnlyList<string> References,
    IReadOnlyList<string> Children,
    DateTimeOffset At) : IRepositoryEvent;

/// <summary>The tag now names the manifest; <paramref name="PreviousDigest"/> is set when the tag moved.</summary>
[MessagePackObject(true)]
public sealed record ManifestTagged(string Repository, string Tag, string Digest, string? PreviousDigest, DateTimeOffset At) : IRepositoryEvent;

/// <summary>The tag was removed (by itself, or because the manifest it named was deleted).</summary>
[MessagePackObject(true)]
public sealed record TagDeleted(string Repository, string Tag, string Digest, DateTimeOffset At) : IRepositoryEvent;

/// <summary>The manifest was deleted from the repository; its tags went first (<see cref="TagDeleted"/>).</summary>
[MessagePackObject(true)]
public sealed record ManifestDeleted(string Repository, string Digest, DateTimeOffset At) : IRepositoryEvent;
