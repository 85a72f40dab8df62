using Flotilla.Cluster.Containers;
using Flotilla.Cluster.Images;
using Flotilla.Contracts;
using Flotilla.Contracts.Containers;
using Flotilla.Contracts.Images;
using Flotilla.NodeRuntime.Images;

namespace Flotilla.Cluster.Audit;

/// <summary>
/// Turns what a user types (a container name, an id prefix, an image reference) into stream keys,
/// with Docker's resolution rules for live objects and the event store's streams for removed ones.
/// </summary>
public sealed class AuditSubjects(AuditQuery audit, ContainerService containers, ImageService images)
{
    /// <summary>The stream of the object, or a NotFound refusal.</summary>
    public async Task<string> ResolveAsync(string kind, string text, CancellationToken cancellationToken = default)
    {
        if (string.IsNullOrWhiteSpace(text)) throw new OperationRejectedException(RejectionCode.InvalidArgument, $"an empty {kind} name");
        var key = kind switch
        {
            "container" => await ContainerAsync(text, cancellationToken),
            "image" => await ImageAsync(text, cancellationToken),
            // A container or an image, whichever the text names (flotilla history).
            "object" => await ContainerAsync(text, cancellationToken) ?? await ImageAsync(text, cancellationToken),
            _ => AuditObject.StreamKey(kind, text)
                ?? throw new OperationRejectedException(RejectionCode.InvalidArgument,
                    $"unknown object kind '{kind}' (known: {string.Join(", ", AuditObject.Kinds)})"),
        };
        return key ?? throw new OperationRejectedException(RejectionCode.NotFound,
            kind == "object" ? $"No such container or image: {text}" : $"No such {kind}: {text}");
    }

    private async Task<string?> ContainerAsync(string text, CancellationToken cancellationToken)
    {
        if (await containers.FindAsync(text, cancellationToken) is { } live) return ContainerStreams.Key(live.ContainerId);
        // Removed containers have no view any more, only their stream.
        if (text.Length >= 3 && text.All(char.IsAsciiHexDigitLower))
        {
            var byId = await audit.StreamsStartingWithAsync(ContainerStreams.Key(text), 2, cancellationToken);
            if (byId.Count == 1) return byId[0];
            if (byId.Count > 1)
                throw new OperationRejectedException(RejectionCode.InvalidArgument, $"multiple containers found with provided prefix: {text}");
        }
        var byName = await audit.StreamsCreatedWithNameAsync("container_created", text.TrimStart('/'), cancellationToken);
        return byName.Count > 0 ? byName[0] : null;
    }

    private async Task<string?> ImageAsync(string text, CancellationToken cancellationToken)
    {
        var normalized = ImageReference.TryParse(text, out var reference) && reference is not null && reference.Digest is null
            ? (reference.Tag is null ? reference.WithTag(ImageReference.DefaultTag) : reference).ToString()
            : null;
        if (await images.FindAsync(normalized, text, cancellationToken) is { } live) return ImageStreams.Key(live.ImageId);
        var hex = text.StartsWith("sha256:", StringComparison.Ordinal) ? text[7..] : text;
        if (hex.Length < 3 || !hex.All(char.IsAsciiHexDigitLower)) return null;
        var byId = await audit.StreamsStartingWithAsync(ImageStreams.Key("sha256:" + hex), 2, cancellationToken);
        return byId.Count == 1 ? byId[0] : null;
    }
}
