using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using static Flotilla.NodeRuntime.Storage.Native;

namespace Flotilla.NodeRuntime.Storage;

/// <summary>
/// What to mount for a container (or a read-only view): overlay lowerdirs in overlay order
/// (<b>top first</b>, as in <c>lowerdir=TOP:…:BOTTOM</c>), and the upper/work pair, or none for a
/// read-only mount.
/// </summary>
public sealed record OverlayMount(IReadOnlyList<string> Lower, string? Upper, string? Work)
{
    /// <summary>Linux accepts one page of mount data.</summary>
    public const int MaxOptionsLength = 4095;

    /// <summary>
    /// The overlay options. Always <c>redirect_dir=off,metacopy=off</c>: with redirects a renamed
    /// lower dir leaves only a redirect xattr and the diff of the upper dir is wrong.
    /// </summary>
    public string Options
    {
        get
        {
            foreach (var p in Lower.Append(Upper ?? "").Append(Work ?? ""))
                if (p.IndexOfAny([':', ',', '\\']) >= 0) throw new InvalidOperationException($"overlay path '{p}' contains ':', ',' or '\\'");
            var o = new StringBuilder("lowerdir=").AppendJoin(':', Lower);
            if (Upper is not null) o.Append(",upperdir=").Append(Upper).Append(",workdir=").Append(Work);
            o.Append(",index=off,redirect_dir=off,metacopy=off");
            if (o.Length > MaxOptionsLength)
                throw new InvalidOperationException($"overlay mount options are {o.Length} bytes, more than one page: too many layers or too long a data root");
            return o.ToString();
        }
    }

    /// <summary>Mounts at <paramref name="target"/> (created if missing). One lower and no upper is a read-only bind mount.</summary>
    public Task MountAsync(string target, CancellationToken cancellationToken = default) => Task.Run(() =>
    {
        if (Lower.Count == 0) throw new InvalidOperationException("an overlay mount needs at least one lower dir");
        Directory.CreateDirectory(target);
        if (Upper is null && Lower.Count == 1)
        {
            Check(mount(Lower[0], target, null, MS_BIND, null), "bind mount", target);
            if (mount(null, target, null, MS_BIND | MS_REMOUNT | MS_RDONLY, null) < 0)
            {
                var e = Errno;
                umount2(target, MNT_DETACH);
                throw Error("remount read-only", target, e);
            }
            return;
        }
        Check(mount("overlay", target, "overlay", 0, Options), "mount overlay", target);
    }, cancellationToken);

    /// <summary>Unmounts <paramref name="target"/>; a busy mount is detached lazily. Not mounted is not an error.</summary>
    public static void Unmount(string target)
    {
        if (umount2(target, 0) == 0) return;
        var e = Errno;
        if (e == EBUSY && umount2(target, MNT_DETACH) == 0) return;
        if (e is EINVAL or ENOENT) return;
        throw Error("umount", target, e);
    }
}

/// <summary>
/// Overlay snapshots under <c>&lt;data&gt;/snapshots</c> (containerd's snapshotter, minus parents
/// as snapshots: one directory per layer). Committed layers live in <c>l/&lt;n&gt;/fs</c> with their
/// chain id in <c>l/&lt;n&gt;/chainid</c> — short numeric names keep a deep image's
/// <c>lowerdir=</c> within one page. A container gets <c>c/&lt;key&gt;/{upper,work}</c>.
/// A layer is unpacked into <c>tmp/</c> and published by rename; if two unpacks of the same
/// layer race, the first rename wins and the other copy is deleted. One snapshotter per data
/// root per process (the id allocation lock is in-process).
/// </summary>
public sealed partial class OverlaySnapshotter
{
    private readonly string _layers;
    private readonly string _containers;
    private readonly string _tmp;
    private readonly Lock _lock = new();
    private readonly Dictionary<Digest, string> _byChain = [];
    private int _nextId = 1;

    public OverlaySnapshotter(string dataRoot)
    {
        Root = Path.Combine(Path.GetFullPath(dataRoot), "snapshots");
        _layers = Path.Combine(Root, "l");
        _containers = Path.Combine(Root, "c");
        _tmp = Path.Combine(Root, "tmp");
        // Layers and containers' writable upper dirs: root only (overlay checks the mounter's rights, not the container user's).
        Host.DataRootPermissions.EnsurePrivate(Root);
        Directory.CreateDirectory(_layers);
        Directory.CreateDirectory(_containers);
        Directory.CreateDirectory(Path.Combine(Root, "empty"));
        if (Directory.Exists(_tmp)) Directory.Delete(_tmp, recursive: true); // leftovers of interrupted unpacks
        Directory.CreateDirectory(_tmp);
        foreach (var dir in Directory.EnumerateDirectories(_layers))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var id)) continue;
            _nextId = Math.Max(_nextId, id + 1);
            var file = Path.Combine(dir, "chainid");
            if (File.Exists(file) && Digest.TryParse(File.ReadAllText(file).Trim(), out var chain)) _byChain[chain] = Path.Combine(dir, "fs");
        }
    }

    public string Root { get; }

    /// <summary>OCI ChainIDs of a layer list given bottom (base) first: chain(L1)=DiffID(L1), chain(Ln)=sha256(chain(Ln-1) + " " + DiffID(Ln)).</summary>
    public static IReadOnlyList<Digest> ChainIds(IReadOnlyList<Digest> diffIdsBottomFirst)
    {
        var result = new List<Digest>(diffIdsBottomFirst.Count);
        foreach (var diff in diffIdsBottomFirst)
            result.Add(result.Count == 0 ? diff : ChainId(result[^1], diff));
        return result;
    }

    public static Digest ChainId(Digest? parentChain, Digest diffId) =>
        parentChain is { } p ? Digest.Of(Encoding.ASCII.GetBytes($"{p} {diffId}")) : diffId;

    public bool Exists(Digest chainId)
    {
        lock (_lock) return _byChain.ContainsKey(chainId);
    }

    /// <summary>The unpacked directory of a committed layer, or null.</summary>
    public string? PathOf(Digest chainId)
    {
        lock (_lock) return _byChain.GetValueOrDefault(chainId);
    }

    /// <summary>
    /// Unpacks a layer blob on top of <paramref name="parentChainId"/> (null for a base layer) and
    /// commits it under its chain id. With <paramref name="expectedDiffId"/> (from the image config's
    /// <c>rootfs.diff_ids</c>) a mismatch is refused and nothing is kept. Already present: the blob is
    /// still read (to verify) but the existing directory is kept.
    /// </summary>
    public async Task<(Digest ChainId, LayerUnpackResult Layer)> ApplyLayerAsync(Digest? parentChainId, Stream blob,
        Digest? expectedDiffId = null, LayerUnpackOptions? options = null, CancellationToken cancellationToken = default)
    {
        if (parentChainId is { } parent && !Exists(parent)) throw new InvalidOperationException($"parent layer {parent} is not unpacked");
        var temp = Path.Combine(_tmp, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(temp);
        try
        {
            var result = await LayerUnpacker.UnpackAsync(blob, Path.Combine(temp, "fs"), options, cancellationToken);
            if (expectedDiffId is { } want && want != result.DiffId) throw new DigestMismatchException(want, result.DiffId);
            var chain = ChainId(parentChainId, result.DiffId);
            await File.WriteAllTextAsync(Path.Combine(temp, "chainid"), chain.ToString(), cancellationToken);
            lock (_lock)
            {
                if (!_byChain.ContainsKey(chain))
                {
                    var dir = Path.Combine(_layers, (_nextId++).ToString());
                    Directory.Move(temp, dir);
                    _byChain[chain] = Path.Combine(dir, "fs");
                }
            }
            return (chain, result);
        }
        finally
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        }
    }

    /// <summary>
    /// Creates (or reuses, after a restart) the container's upper and work dirs and returns the
    /// mount over <paramref name="chainIdsBottomFirst"/> — the image's layers in manifest order,
    /// base first. An empty list (a <c>FROM scratch</c> image) mounts over an empty lower dir.
    /// </summary>
    public OverlayMount Prepare(string containerKey, IReadOnlyList<Digest> chainIdsBottomFirst)
    {
        var dir = ContainerDir(containerKey);
        var lower = Lowers(chainIdsBottomFirst);
        var upper = Path.Combine(dir, "upper");
        var work = Path.Combine(dir, "work");
        Directory.CreateDirectory(upper);
        Directory.CreateDirectory(work);
        var mount = new OverlayMount(lower, upper, work);
        _ = mount.Options; // fails now, not at mount time, if the options do not fit
        return mount;
    }

    /// <summary>A read-only view of committed layers (no upper dir).</summary>
    public OverlayMount View(IReadOnlyList<Digest> chainIdsBottomFirst) => new(Lowers(chainIdsBottomFirst), null, null);

    /// <summary>The container's upper dir (its changes), for commit, or null if it was never prepared.</summary>
    public string? UpperOf(string containerKey)
    {
        var upper = Path.Combine(ContainerDir(containerKey), "upper");
        return Directory.Exists(upper) ? upper : null;
    }

    /// <summary>Deletes the container's upper and work dirs; unmount first. False if there were none.</summary>
    public bool Remove(string containerKey)
    {
        var dir = ContainerDir(containerKey);
        if (!Directory.Exists(dir)) return false;
        Directory.Delete(dir, recursive: true);
        return true;
    }

    /// <summary>Deletes a committed layer; the caller makes sure no image or container still uses it.</summary>
    public bool RemoveLayer(Digest chainId)
    {
        string fs;
        lock (_lock)
        {
            if (!_byChain.Remove(chainId, out fs!)) return false;
        }
        var dir = Path.GetDirectoryName(fs)!;
        var doomed = Path.Combine(_tmp, Guid.NewGuid().ToString("N"));
        Directory.Move(dir, doomed);
        Directory.Delete(doomed, recursive: true);
        return true;
    }

    public IReadOnlyCollection<Digest> Layers()
    {
        lock (_lock) return [.. _byChain.Keys];
    }

    /// <summary>Bytes used by everything under the snapshot root (apparent sizes; hardlinked files counted once).</summary>
    public long Usage() => UsageOf(Root);

    /// <summary>Bytes of one committed layer, or null if absent.</summary>
    public long? UsageOf(Digest chainId) => PathOf(chainId) is { } p ? UsageOf(p) : null;

    private static long UsageOf(string dir)
    {
        long total = 0;
        var seen = new HashSet<(uint, uint, ulong)>();
        var options = new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0, IgnoreInaccessible = true };
        foreach (var path in Directory.EnumerateFiles(dir, "*", options))
        {
            if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, out var st) < 0 || st.Type != S_IFREG) continue;
            if (st.Nlink > 1 && !seen.Add((st.DevMajor, st.DevMinor, st.Ino))) continue;
            total += (long)st.Size;
        }
        return total;
    }

    private List<string> Lowers(IReadOnlyList<Digest> chainIdsBottomFirst)
    {
        if (chainIdsBottomFirst.Count == 0) return [Path.Combine(Root, "empty")];
        var lower = new List<string>(chainIdsBottomFirst.Count);
        for (var i = chainIdsBottomFirst.Count - 1; i >= 0; i--)
            lower.Add(PathOf(chainIdsBottomFirst[i]) ?? throw new InvalidOperationException($"layer {chainIdsBottomFirst[i]} is not unpacked"));
        return lower;
    }

    private string ContainerDir(string key)
    {
        if (!KeyPattern().IsMatch(key)) throw new ArgumentException($"invalid container key '{key}'", nameof(key));
        return Path.Combine(_containers, key);
    }

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
    private static partial Regex KeyPattern();
}
