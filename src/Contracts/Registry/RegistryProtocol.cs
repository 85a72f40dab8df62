using Flotilla.Contracts.Wire;
using MessagePack;

namespace Flotilla.Contracts.Registry;

/// <summary>A message addressed to one <c>RepositoryEntity</c> (keyed by repository name, <c>library/busybox</c>).</summary>
public interface IWithRepository : IFlotillaMessage
{
    string Repository { get; }
}

/// <summary>A command that may change a repository; carries who asked.</summary>
public interface IRepositoryCommand : IWithRepository
{
    RequestOrigin Origin { get; }
}

/// <summary>Links a blob that is in the registry's content store into the repository.</summary>
[MessagePackObject(true)]
public sealed record LinkBlob(string Repository, string Digest, long Size, string Via, RequestOrigin Origin) : IRepositoryCommand;

[MessagePackObject(true)]
public sealed record UnlinkBlob(string Repository, string Digest, RequestOrigin Origin) : IRepositoryCommand;

/// <summary>
/// Records a manifest whose bytes are already in the content store, optionally under a tag. Refused with
/// <c>MANIFEST_BLOB_UNKNOWN</c> when a referenced blob is not linked or a child manifest is not in the repository.
/// </summary>
[MessagePackObject(true)]
public sealed record PushManifest(
    string Repository,
    string Digest,
    string MediaType,
    long Size,
    string? Subject,
    string? ArtifactType,
    IReadOnlyDictionary<string, string>? Annotations,
    IReadOnlyList<string> References,
    IReadOnlyList<string> Children,
    string? Tag,
    RequestOrigin Origin) : IRepositoryCommand;

[MessagePackObject(true)]
public sealed record DeleteTag(string Repository, string Tag, RequestOrigin Origin) : IRepositoryCommand;

/// <summary>Deletes the manifest and every tag that names it.</summary>
[MessagePackObject(true)]
public sealed record DeleteManifest(string Repository, string Digest, RequestOrigin Origin) : IRepositoryCommand;

[MessagePackObject(true)]
public sealed record RepositoryCommandAccepted(string Repository, IReadOnlyList<IRepositoryEvent> Events, long Version) : IFlotillaMessage;

/// <summary>A repository command refused with one of the distribution spec's error codes (<see cref="RegistryErrorCodes"/>).</summary>
[MessagePackObject(true)]
public sealed record RepositoryCommandRejected(string Repository, string ErrorCode, string Message, string? Detail) : IFlotillaMessage;

public static class RepositoryStreams
{
    public static string Key(string repository) => "repository-" + repository;
}

/// <summary>The error codes of the OCI distribution spec (plus distribution's legacy ones we use).</summary>
public static class RegistryErrorCodes
{
    public const string BlobUnknown = "BLOB_UNKNOWN";
    public const string BlobUploadInvalid = "BLOB_UPLOAD_INVALID";
    public const string BlobUploadUnknown = "BLOB_UPLOAD_UNKNOWN";
    public const string DigestInvalid = "DIGEST_INVALID";
    public const string ManifestBlobUnknown = "MANIFEST_BLOB_UNKNOWN";
    public const string ManifestInvalid = "MANIFEST_INVALID";
    public const string ManifestUnknown = "MANIFEST_UNKNOWN";
    public const string NameInvalid = "NAME_INVALID";
    public const string NameUnknown = "NAME_UNKNOWN";
    public const string SizeInvalid = "SIZE_INVALID";
    public const string Unauthorized = "UNAUTHORIZED";
    public const string Denied = "DENIED";
    public const string Unsupported = "UNSUPPORTED";
    public const string TooManyRequests = "TOOMANYREQUESTS";
    public const string RangeInvalid = "RANGE_INVALID";
    public const string PaginationNumberInvalid = "PAGINATION_NUMBER_INVALID";
    public const string TagInvalid = "TAG_INVALID";
    public const string Unknown = "UNKNOWN";
    public const string Unavailable = "UNAVAILABLE";
}
