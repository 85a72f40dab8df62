using Akka.Actor;
using Akka.Hosting;
using Flotilla.Cluster;
using Flotilla.Cluster.Containers;
using Flotilla.Contracts;
using Flotilla.Contracts.Images;
using Marten;

namespace Flotilla.Cluster.Images;

/// <summary>One line of an image removal, as Docker reports it.</summary>
public sealed record ImageDeleteItem(string? Untagged, string? Deleted);

/// <summary>
/// The image use cases the API surfaces share: name resolution over the image projection, and the
/// rules of tag, untag and delete (Docker's), carried out as commands to the image entities.
/// References are passed in normalised form (<c>docker.io/library/busybox:latest</c>).
/// </summary>
public sealed class ImageService(IDocumentStore store, IRequiredActor<ImageEntity> images)
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(30);

    public async Task<IReadOnlyList<ImageView>> ListAsync(CancellationToken cancellationToken = default)
    {
        await using var session = store.QuerySession();
        return await session.Query<ImageView>().OrderByDescending(i => i.Created).ToListAsync(cancellationToken);
    }

    /// <summary>Finds an image by full id, id without <c>sha256:</c>, a unique id prefix of 3+ characters, or a normalised reference.</summary>
    public async Task<ImageView?> FindAsync(string? normalizedReference, string text, CancellationToken cancellationToken = default)
    {
        await using var session = store.QuerySession();
        if (normalizedReference is not null)
        {
            var byTag = await session.Query<ImageView>().Where(i => i.RepoTags.Contains(normalizedReference)).FirstOrDefaultAsync(cancellationToken);
            if (byTag is not null) return byTag;
        }
        var hex = text.StartsWith("sha256:", StringComparison.Ordinal) ? text[7..] : text;
        if (hex.Length < 3 || hex.Length > 64 || !hex.All(char.IsAsciiHexDigitLower)) return null;
        var prefix = "sha256:" + hex;
        var matches = await session.Query<ImageView>().Where(i => i.ImageId.StartsWith(prefix)).Take(2).ToListAsync(cancellationToken);
        return matches.Count switch
        {
            1 => matches[0],
            0 => null,
            _ => throw new OperationRejectedException(RejectionCode.Conflict, $"multiple images found with provided prefix: {hex}"),
        };
    }

    /// <summary>Points the reference at the image, taking it from whichever image held it.</summary>
    public async Task TagAsync(ImageView image, string reference, RequestOrigin origin, CancellationToken cancellationToken = default)
    {
        var previous = await HolderOfAsync(reference, cancellationToken);
        await AskAsync(new TagImage(image.ImageId, reference, origin));
        if (previous is not null && previous.ImageId != image.ImageId)
            await AskAsync(new UntagImage(previous.ImageId, reference, $"moved to {image.ImageId}", origin));
    }

    /// <summary>Records an image that arrived on a node, moving its references from older holders.</summary>
    public async Task RegisterAsync(RegisterImage command, CancellationToken cancellationToken = default)
    {
        var previous = new List<(string ImageId, string Reference)>();
        foreach (var reference in command.References)
            if (await HolderOfAsync(reference, cancellationToken) is { } holder && holder.ImageId != command.ImageId)
                previous.Add((holder.ImageId, reference));
        await AskAsync(command);
        foreach (var (imageId, reference) in previous)
            await AskAsync(new UntagImage(imageId, reference, $"moved to {command.ImageId}", command.Origin));
    }

    /// <summary>Records that the image was pulled from or pushed to a registry (who, which reference, which manifest digest).</summary>
    public Task RecordDistributionAsync(RecordImageDistribution command) => AskAsync(command);

    /// <summary>Records that the image's content was fetched from peers onto a node.</summary>
    public Task RecordReplicaAsync(RecordImageReplica command) => AskAsync(command);

    /// <summary>
    /// Docker's <c>rmi</c>: by reference it untags, and deletes the image once nothing names it; by id it
    /// deletes, refusing (unless forced) an image that several references name. Images used by
    /// containers are refused.
    /// </summary>
    public async Task<IReadOnlyList<ImageDeleteItem>> RemoveAsync(ImageView image, string? byReference, bool force,
        RequestOrigin origin, CancellationToken cancellationToken = default)
    {
        var shortId = image.ImageId[7..19];
        var users = await ContainersUsingAsync(image, cancellationToken);
        var result = new List<ImageDeleteItem>();

        if (byReference is not null && image.RepoTags.Contains(byReference))
        {
            if (users.Count > 0 && image.RepoTags.Count == 1 && !force)
                throw new OperationRejectedException(RejectionCode.Conflict,
                    $"conflict: unable to remove repository reference \"{byReference}\" (must force) - container {users[0].ContainerId[..12]} is using its referenced image {shortId}");
            await AskAsync(new UntagImage(image.ImageId, byReference, "rmi", origin));
            result.Add(new ImageDeleteItem(byReference, null));
            if (image.RepoTags.Count > 1 || users.Count > 0) return result;
        }
        else
        {
            if (users.Count > 0)
                throw new OperationRejectedException(RejectionCode.Conflict, force
                    ? $"conflict: unable to delete {shortId} (cannot be forced) - image is being used by container {users[0].ContainerId[..12]}"
                    : $"conflict: unable to delete {shortId} (must be forced) - image is being used by stopped container {users[0].ContainerId[..12]}");
            if (image.RepoTags.Count > 1 && !force)
                throw new OperationRejectedException(RejectionCode.Conflict,
                    $"conflict: unable to delete {shortId} (must be forced) - image is referenced in multiple repositories");
            result.AddRange(image.RepoTags.Select(t => new ImageDeleteItem(t, null)));
        }
        await AskAsync(new RemoveImage(image.ImageId, origin));
        result.Add(new ImageDeleteItem(null, image.ImageId));
        return result;
    }

    /// <summary>The containers whose image this is (by id, or by one of its references).</summary>
    public async Task<IReadOnlyList<ContainerView>> ContainersUsingAsync(ImageView image, CancellationToken cancellationToken = default)
    {
        await using var session = store.QuerySession();
        var names = image.RepoTags.Append(image.ImageId).ToList();
        return await session.Query<ContainerView>().Where(c => names.Contains(c.Image)).ToListAsync(cancellationToken);
    }

    /// <summary>How many containers use each image id, for listings.</summary>
    public async Task<IReadOnlyDictionary<string, int>> ContainerCountsByImageAsync(CancellationToken cancellationToken = default)
    {
        await using var session = store.QuerySession();
        var images = await session.Query<ImageView>().ToListAsync(cancellationToken);
        var containers = await session.Query<ContainerView>().Select(c => c.Image).ToListAsync(cancellationToken);
        return images.ToDictionary(i => i.ImageId, i => containers.Count(c => c == i.ImageId || i.RepoTags.Contains(c)));
    }

    private async Task<ImageView?> HolderOfAsync(string reference, CancellationToken cancellationToken)
    {
        await using var session = store.QuerySession();
        return await session.Query<ImageView>().Where(i => i.RepoTags.Contains(reference)).FirstOrDefaultAsync(cancellationToken);
    }

    private async Task<ImageCommandAccepted> AskAsync(IImageCommand command) =>
        await images.ActorRef.Ask<object>(command, AskTimeout) switch
        {
            ImageCommandAccepted ok => ok,
            CommandRejected r => throw new OperationRejectedException(r.Code, r.Message),
            var other => throw new InvalidOperationException($"unexpected reply {other.GetType().Name}"),
        };
}
