using System.Formats.Tar;
using System.IO.Compression;
using System.Text;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Storage;
using Flotilla.Tests.Support;
using Xunit;

namespace Flotilla.Tests.Images;

/// <summary>A content store in a temp dir, removed on dispose.</summary>
public sealed class TempStore : IDisposable
{
    public TempStore()
    {
        Dir = Path.Combine(Path.GetTempPath(), "flotilla-img-" + Guid.NewGuid().ToString("N")[..12]);
        Store = new ContentStore(Path.Combine(Dir, "content"));
    }

    public string Dir { get; }
    public ContentStore Store { get; }

    /// <summary>Leftovers of loads: the reader's spool directories must be gone.</summary>
    public string[] SpoolLeftovers() =>
        Directory.Exists(Path.Combine(Store.Root, "tmp")) ? Directory.GetFileSystemEntries(Path.Combine(Store.Root, "tmp")) : [];

    public void Dispose()
    {
        try { Directory.Delete(Dir, recursive: true); }
        catch (IOException) { }
    }
}

/// <summary>An image built in memory: its layers (uncompressed tars), config bytes and ids.</summary>
public sealed record TestImage(IReadOnlyList<byte[]> Layers, byte[] ConfigBytes)
{
    public Digest Id => Digest.Of(ConfigBytes);
    public IReadOnlyList<Digest> DiffIds => Layers.Select(l => Digest.Of(l)).ToList();
}

public static class ArchiveFixtures
{
    public static readonly DateTimeOffset Created = new(2024, 5, 1, 12, 0, 0, TimeSpan.Zero);

    /// <summary>busybox plus a couple of files: a real, runnable rootfs.</summary>
    public static byte[] BusyboxRootfs()
    {
        var busybox = File.Exists("/bin/busybox") ? "/bin/busybox" : "/usr/bin/busybox";
        return Tar(w =>
        {
            AddDir(w, "bin/");
            AddDir(w, "etc/");
            AddFile(w, "bin/busybox", File.ReadAllBytes(busybox), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
                | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
            var sh = new UstarTarEntry(TarEntryType.SymbolicLink, "bin/sh") { LinkName = "busybox", ModificationTime = Created };
            w.WriteEntry(sh);
            AddFile(w, "etc/hostname", "flotilla\n"u8.ToArray());
            AddFile(w, "hello.txt", "hello from flotilla\n"u8.ToArray());
        });
    }

    public static byte[] SmallLayer(string name, string text) => Tar(w => AddFile(w, name, Encoding.UTF8.GetBytes(text)));

    public static byte[] Tar(Action<TarWriter> build)
    {
        var ms = new MemoryStream();
        using (var w = new TarWriter(ms, TarEntryFormat.Ustar, leaveOpen: true)) build(w);
        return ms.ToArray();
    }

    public static void AddDir(TarWriter w, string name) =>
        w.WriteEntry(new UstarTarEntry(TarEntryType.Directory, name) { Mode = (UnixFileMode)0b111_101_101, ModificationTime = Created });

    public static void AddFile(TarWriter w, string name, byte[] data, UnixFileMode mode = (UnixFileMode)0b110_100_100) =>
        w.WriteEntry(new UstarTarEntry(TarEntryType.RegularFile, name) { Mode = mode, ModificationTime = Created, DataStream = new MemoryStream(data) });

    public static void AddLink(TarWriter w, string name, string target) =>
        w.WriteEntry(new UstarTarEntry(TarEntryType.SymbolicLink, name) { LinkName = target, ModificationTime = Created });

    public static byte[] ConfigFor(IEnumerable<byte[]> layers, IEnumerable<string>? diffIdOverride = null, string? cmd = "sh") =>
        OciJson.Serialize(new ImageConfigFile
        {
            Created = Created,
            Architecture = HostPlatform.Architecture,
            Os = "linux",
            Config = new ContainerConfig { Cmd = cmd is null ? null : [cmd], Env = ["PATH=/bin"] },
            RootFs = new RootFs { DiffIds = (diffIdOverride ?? layers.Select(l => Digest.Of(l).ToString())).ToList() },
            History = layers.Select(_ => new HistoryEntry { Created = Created, CreatedBy = "test" }).ToList(),
        });

    public static TestImage Image(params byte[][] layers) => new(layers, ConfigFor(layers));

    public static TestImage Busybox() => Image(BusyboxRootfs(), SmallLayer("etc/motd", "second layer\n"));

    public static byte[] Gzip(byte[] data)
    {
        var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true)) gz.Write(data);
        return ms.ToArray();
    }

    /// <summary>Compresses with a command-line tool (<c>xz</c>, <c>zstd</c>); null when the tool is missing.</summary>
    public static async Task<byte[]?> CompressWithAsync(string tool, byte[] data)
    {
        var path = new[] { "/usr/bin/", "/bin/", "/usr/local/bin/" }.Select(d => d + tool).FirstOrDefault(File.Exists);
        if (path is null) return null;
        var input = Path.GetTempFileName();
        try
        {
            await File.WriteAllBytesAsync(input, data);
            // ProcessRunner reads stdout as text: let the shell redirect into a file.
            var output = input + "." + tool;
            var sh = await ProcessRunner.RunAsync("/bin/sh", ["-c", $"{path} -c -q '{input}' > '{output}'"]);
            Assert.True(sh.ExitCode == 0, sh.ToString());
            var bytes = await File.ReadAllBytesAsync(output);
            File.Delete(output);
            return bytes;
        }
        finally
        {
            File.Delete(input);
        }
    }

    /// <summary>Pre-25 docker-archive: <c>&lt;v1id&gt;/layer.tar</c>, <c>&lt;hex&gt;.json</c>; a repeated layer is a symlink, as Docker and podman write it.</summary>
    public static byte[] DockerArchive(TestImage image, string[] tags, Func<int, byte[], byte[]>? layerBytes = null,
        Action<TarWriter>? extra = null, string? manifestJson = null)
    {
        return Tar(w =>
        {
            var paths = new List<string>();
            for (var i = 0; i < image.Layers.Count; i++)
            {
                var v1 = Digest.Of(Encoding.UTF8.GetBytes("v1-" + i + image.Id)).Hex;
                AddDir(w, v1 + "/");
                AddFile(w, v1 + "/VERSION", "1.0"u8.ToArray());
                AddFile(w, v1 + "/json", Encoding.UTF8.GetBytes($$"""{"id":"{{v1}}"}"""));
                if (i == 0)
                {
                    // podman style: the layer is <diffid>.tar at the root, layer.tar a symlink to it.
                    AddFile(w, image.DiffIds[i].Hex + ".tar", layerBytes?.Invoke(i, image.Layers[i]) ?? image.Layers[i]);
                    AddLink(w, v1 + "/layer.tar", "../" + image.DiffIds[i].Hex + ".tar");
                }
                else AddFile(w, v1 + "/layer.tar", layerBytes?.Invoke(i, image.Layers[i]) ?? image.Layers[i]);
                paths.Add(v1 + "/layer.tar");
            }
            AddFile(w, image.Id.Hex + ".json", image.ConfigBytes);
            var manifest = manifestJson ?? System.Text.Json.JsonSerializer.Serialize(new[]
            {
                new { Config = image.Id.Hex + ".json", RepoTags = tags, Layers = paths },
            });
            AddFile(w, "manifest.json", Encoding.UTF8.GetBytes(manifest));
            AddFile(w, "repositories", "{}"u8.ToArray());
            extra?.Invoke(w);
        });
    }

    /// <summary>
    /// Pure OCI image layout: gzip layers, and the image manifest behind a nested index
    /// (one entry for the host platform, one decoy for another).
    /// </summary>
    public static byte[] OciLayout(TestImage image, IReadOnlyList<Dictionary<string, string>?> topAnnotations, bool nested = true)
    {
        var blobs = new Dictionary<Digest, byte[]>();
        Digest Add(byte[] b)
        {
            var d = Digest.Of(b);
            blobs[d] = b;
            return d;
        }
        var layerDescriptors = image.Layers.Select(l =>
        {
            var gz = Gzip(l);
            return new OciDescriptor { MediaType = MediaTypes.OciLayerGzip, Digest = Add(gz).ToString(), Size = gz.Length };
        }).ToList();
        var config = new OciDescriptor { MediaType = MediaTypes.OciConfig, Digest = Add(image.ConfigBytes).ToString(), Size = image.ConfigBytes.Length };
        var manifestBytes = OciJson.Serialize(new OciManifest { MediaType = MediaTypes.OciManifest, Config = config, Layers = layerDescriptors });
        var top = new OciDescriptor { MediaType = MediaTypes.OciManifest, Digest = Add(manifestBytes).ToString(), Size = manifestBytes.Length };
        if (nested)
        {
            var decoyConfig = ConfigFor([]);
            var decoyManifest = OciJson.Serialize(new OciManifest
            {
                MediaType = MediaTypes.OciManifest,
                Config = new OciDescriptor { MediaType = MediaTypes.OciConfig, Digest = Add(decoyConfig).ToString(), Size = decoyConfig.Length },
            });
            var nestedIndex = OciJson.Serialize(new OciIndex
            {
                MediaType = MediaTypes.OciIndex,
                Manifests =
                [
                    new OciDescriptor { MediaType = MediaTypes.OciManifest, Digest = Add(decoyManifest).ToString(), Size = decoyManifest.Length,
                        Platform = new OciPlatform { Os = "linux", Architecture = "mips64le" } },
                    top with { Platform = new OciPlatform { Os = "linux", Architecture = HostPlatform.Architecture } },
                ],
            });
            top = new OciDescriptor { MediaType = MediaTypes.OciIndex, Digest = Add(nestedIndex).ToString(), Size = nestedIndex.Length };
        }
        var index = OciJson.Serialize(new OciIndex
        {
            MediaType = MediaTypes.OciIndex,
            Manifests = topAnnotations.Select(a => top with { Annotations = a }).ToList(),
        });
        return Tar(w =>
        {
            AddFile(w, "oci-layout", """{"imageLayoutVersion":"1.0.0"}"""u8.ToArray());
            AddDir(w, "blobs/");
            AddDir(w, "blobs/sha256/");
            foreach (var (d, b) in blobs.OrderBy(kv => kv.Key.Hex, StringComparer.Ordinal)) AddFile(w, "blobs/sha256/" + d.Hex, b);
            AddFile(w, "index.json", index);
        });
    }

    public static async Task<byte[]> SaveAsync(ContentStore store, params ImageToSave[] images)
    {
        var ms = new MemoryStream();
        await new ImageArchiveWriter(store).WriteAsync(ms, images);
        return ms.ToArray();
    }

    /// <summary>Puts a test image into a store the way a load would, so the writer can save it.</summary>
    public static async Task PutAsync(ContentStore store, TestImage image)
    {
        foreach (var l in image.Layers) await store.IngestAsync(l, MediaTypes.OciLayer);
        await store.IngestAsync(image.ConfigBytes, MediaTypes.OciConfig);
    }

    public static Dictionary<string, byte[]> Entries(byte[] tar)
    {
        var result = new Dictionary<string, byte[]>();
        using var r = new TarReader(new MemoryStream(tar));
        while (r.GetNextEntry() is { } e)
        {
            var ms = new MemoryStream();
            e.DataStream?.CopyTo(ms);
            result[e.Name] = ms.ToArray();
        }
        return result;
    }
}
