using Akka.Actor;
using Akka.Hosting;
using Flotilla.Cluster;
using Flotilla.Cluster.Containers;
using Flotilla.Contracts;
using Flotilla.Contracts.Containers;
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
    /// Docker's <c>rmi</c>, by moby's rules (daemon/images/image_delete.go). By reference: refused without
    /// <paramref name="force"/> when it is the image's only tag and a container (any state) uses the image; else the tag
    /// goes, and the image too once nothing names it, unless something still needs it (a child image, a running
    /// container, or without force a stopped one): then it stays, untagged. By id: refused (even forced) for a child
    /// image or a running container, and without force for several tags or a stopped container.
    /// With <paramref name="pruneParents"/> (Docker's default, <c>noprune</c> off), a deleted image's untagged parents
    /// that nothing needs go with it. A container keeps its layers even when its image goes (see the image GC).
    /// </summary>
    /// <param name="named">The name as the client wrote it, for Docker's messages.</param>
    public async Task<IReadOnlyList<ImageDeleteItem>> RemoveAsync(ImageView image, string? byReference, string named, bool force,
        bool pruneParents, RequestOrigin origin, CancellationToken cancellationToken = default)
    {
        var users = await ContainersUsingAsync(image, cancellationToken);
        var hasChildren = await HasChildrenAsync(image.ImageId, cancellationToken);
        var result = new List<ImageDeleteItem>();

        if (byReference is not null)
        {
            if (!force && image.RepoTags.Count == 1 && users.Count > 0)
                throw new OperationRejectedException(RejectionCode.Conflict,
                    $"conflict: unable to remove repository reference \"{named}\" (must force) - container {ShortId(users[0].ContainerId)} is using its referenced image {ShortId(image.ImageId)}");
            await AskAsync(new UntagImage(image.ImageId, byReference, "rmi", origin));
            result.Add(new ImageDeleteItem(byReference, null));
            // The image itself is then deleted quietly: whatever still needs it keeps it, untagged.
            if (image.RepoTags.Count > 1 || DeleteConflict(image.ImageId, users, hasChildren, force, multipleReferences: false) is not null)
                return result;
        }
        else
        {
            if (DeleteConflict(image.ImageId, users, hasChildren, force, multipleReferences: image.RepoTags.Count > 1) is { } conflict)
                throw new OperationRejectedException(RejectionCode.Conflict, conflict);
            result.AddRange(image.RepoTags.Select(t => new ImageDeleteItem(t, null)));
        }
        await AskAsync(new RemoveImage(image.ImageId, origin));
        result.Add(new ImageDeleteItem(null, image.ImageId));

        for (var parentId = image.Parent; pruneParents && parentId is not null;)
        {
            if (await GetAsync(parentId, cancellationToken) is not { RepoTags.Count: 0 } parent) break;
            var parentUsers = await ContainersUsingAsync(parent, cancellationToken);
            if (DeleteConflict(parent.ImageId, parentUsers, await HasChildrenAsync(parent.ImageId, cancellationToken), force: false,
                    multipleReferences: false) is not null)
                break;
            await AskAsync(new RemoveImage(parent.ImageId, origin));
            result.Add(new ImageDeleteItem(null, parent.ImageId));
            parentId = parent.Parent;
        }
        return result;
    }

    /// <summary>
    /// moby's delete conflicts, in its order: hard ones (a child image, a running container) refuse even a forced
    /// delete; soft ones (several references, a stopped container) only an unforced one. Null: none.
    /// </summary>
    private static string? DeleteConflict(string imageId, IReadOnlyList<ContainerView> users, bool hasChildren, bool force,
        bool multipleReferences)
    {
        var hard = hasChildren ? "image has dependent child images"
            : users.FirstOrDefault(IsRunning) is { } running ? $"image is being used by running container {ShortId(running.ContainerId)}"
            : null;
        if (hard is not null) return $"conflict: unable to delete {ShortId(imageId)} (cannot be forced) - {hard}";
        if (force) return null;
        var soft = multipleReferences ? "image is referenced in multiple repositories"
            : users.FirstOrDefault(u => !IsRunning(u)) is { } stopped ? $"image is being used by stopped container {ShortId(stopped.ContainerId)}"
            : null;
        return soft is null ? null : $"conflict: unable to delete {ShortId(imageId)} (must be forced) - {soft}";
    }

    /// <summary>Docker's "running" for image conflicts: a process exists (paused and restarting count).</summary>
    private static bool IsRunning(ContainerView container) =>
        container.Status is ContainerStatus.Running or ContainerStatus.Paused or ContainerStatus.Restarting;

    /// <summary>Docker's short id: 12 hex digits, without <c>sha256:</c>.</summary>
    private static string ShortId(string id) => (id.StartsWith("sha256:", StringComparison.Ordinal) ? id[7..] : id)[..12];

    /// <summary>
    /// Docker's <c>image prune</c> (moby's image_prune.go): every image (or only untagged ones when
    /// <paramref name="danglingOnly"/>) that <paramref name="matches"/> the filters, except untagged images with children,
    /// is removed as <c>rmi</c> would without force (by each tag, or by id), with its unneeded parents; what a container or
    /// a child image still needs is a conflict and skipped.
    /// </summary>
    public async Task<IReadOnlyList<ImageDeleteItem>> PruneAsync(bool danglingOnly, Func<ImageView, bool> matches, RequestOrigin origin,
        CancellationToken cancellationToken = default)
    {
        var all = await ListAsync(cancellationToken);
        var parents = all.Where(i => i.Parent is not null).Select(i => i.Parent!).ToHashSet(StringComparer.Ordinal);
        var candidates = all.Where(i => !(i.RepoTags.Count == 0 && parents.Contains(i.ImageId)))
            .Where(i => !danglingOnly || i.RepoTags.Count == 0)
            .Where(matches)
            .ToList();
        var result = new List<ImageDeleteItem>();
        foreach (var candidate in candidates)
        {
            cancellationToken.ThrowIfCancellationRequested();
            // Read again each time: an earlier removal may have taken this image (a parent) or some of its tags.
            foreach (var tag in candidate.RepoTags.Count == 0 ? [null] : candidate.RepoTags.ToList<string?>())
            {
                if (await GetAsync(candidate.ImageId, cancellationToken) is not { } image) break;
                if (tag is not null && !image.RepoTags.Contains(tag)) continue;
                try
                {
                    result.AddRange(await RemoveAsync(image, tag, tag ?? image.ImageId, force: false, pruneParents: true, origin, cancellationToken));
                }
                catch (OperationRejectedException ex) when (ex.Code is RejectionCode.Conflict or RejectionCode.NotFound)
                {
                    // In use, or gone meanwhile: prune skips it, as moby does.
                }
            }
        }
        return result;
    }

    /// <summary>The image with this id, if it exists.</summary>
    public async Task<ImageView?> GetAsync(string imageId, CancellationToken cancellationToken = default)
    {
        await using var session = store.QuerySession();
        return await session.LoadAsync<ImageView>(ImageStreams.Key(imageId), cancellationToken);
    }

    /// <summary>
    /// The containers whose image this is, oldest first, in any state and on any node (the cluster's read model).
    /// By id, as moby compares them: the name a container was created with may since point elsewhere.
    /// </summary>
    public async Task<IReadOnlyList<ContainerView>> ContainersUsingAsync(ImageView image, CancellationToken cancellationToken = default)
    {
        await using var session = store.QuerySession();
        return await session.Query<ContainerView>().Where(c => c.ImageId == image.ImageId).OrderBy(c => c.CreatedAt)
            .ToListAsync(cancellationToken);
    }

    private async Task<bool> HasChildrenAsync(string imageId, CancellationToken cancellationToken)
    {
        await using var session = store.QuerySession();
        return await session.Query<ImageView>().AnyAsync(i => i.Parent == imageId, cancellationToken);
    }

    /// <summary>How many containers use each image id, for listings.</summary>
    public async Task<IReadOnlyDictionary<string, int>> ContainerCountsByImageAsync(CancellationToken cancellationToken = default)
    {
        await using var session = store.QuerySession();
        var containers = await session.Query<ContainerView>().Select(c => c.ImageId).ToListAsync(cancellationToken);
        return containers.GroupBy(id => id).ToDictionary(g => g.Key, g => g.Count());
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
