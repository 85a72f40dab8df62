namespace Flotilla.Contracts.Containers;

/// <summary>A container id that is not Docker's form (64 lowercase hex characters).</summary>
public sealed class InvalidContainerIdException(string id)
    : ArgumentException($"invalid container id '{Printable(id)}': want 64 lowercase hex characters")
{
    public string Id { get; } = id;

    private static string Printable(string id) =>
        new((id.Length > 80 ? id[..80] : id).Select(c => char.IsControl(c) ? '?' : c).ToArray());
}

/// <summary>
/// The one check of a container id, made wherever an id becomes a path (<c>Path.Combine(root, id)</c>), a command
/// argument (runc, conmon) or a cgroup name, and wherever it arrives from another process (runtime messages): only
/// 64 lowercase hex characters, so an id can never be <c>..</c>, hold a <c>/</c>, a NUL or an option.
/// </summary>
public static class ContainerIds
{
    public const int Length = 64;

    public static bool IsValid(string? id)
    {
        if (id is null || id.Length != Length) return false;
        foreach (var c in id)
            if (c is not (>= '0' and <= '9' or >= 'a' and <= 'f')) return false;
        return true;
    }

    /// <summary>Returns <paramref name="id"/> when valid, else throws <see cref="InvalidContainerIdException"/>.</summary>
    public static string Validate(string? id) => IsValid(id) ? id! : throw new InvalidContainerIdException(id ?? "");
}
