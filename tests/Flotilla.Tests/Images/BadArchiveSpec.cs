using System.Text;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Storage;
using Xunit;
using static Flotilla.Tests.Images.ArchiveFixtures;

namespace Flotilla.Tests.Images;

/// <summary>Untrusted archives that must be refused with a clear message, leaving no spool behind.</summary>
public sealed class BadArchiveSpec
{
    private static readonly TestImage Good = Image(SmallLayer("a.txt", "a"), SmallLayer("b.txt", "b"));

    private static string ManifestJson(string config, params string[] layers) =>
        System.Text.Json.JsonSerializer.Serialize(new[] { new { Config = config, RepoTags = new[] { "x:1" }, Layers = layers } });

    public static TheoryData<string, Func<byte[]>, string> Cases => new()
    {
        { "empty input", () => [], "missing manifest.json and index.json" },
        { "not a tar", () => Encoding.UTF8.GetBytes(new string('x', 2000)), "invalid archive" },
        { "truncated tar", () => DockerArchive(Good, ["x:1"])[..1800], "invalid archive" },
        { "truncated gzip", () => Gzip(DockerArchive(Good, ["x:1"]))[..300], "invalid archive" },
        { "no manifest.json nor index.json", () => Tar(w => AddFile(w, "repositories", "{}"u8.ToArray())), "missing manifest.json and index.json" },
        { "bad JSON in manifest.json", () => DockerArchive(Good, ["x:1"], manifestJson: "[{\"Config\": "), "manifest.json is not valid JSON" },
        { "manifest.json of the wrong shape", () => DockerArchive(Good, ["x:1"], manifestJson: "{\"Config\":\"x\"}"), "manifest.json is not valid JSON" },
        { "manifest.json lists nothing", () => DockerArchive(Good, ["x:1"], manifestJson: "[]"), "lists no images" },
        { "Config path outside the archive", () => DockerArchive(Good, ["x:1"], manifestJson: ManifestJson("../../etc/passwd")), "points outside the archive" },
        { "absolute Config path", () => DockerArchive(Good, ["x:1"], manifestJson: ManifestJson("/etc/passwd")), "points outside the archive" },
        { "missing config", () => DockerArchive(Good, ["x:1"], manifestJson: ManifestJson(new string('0', 64) + ".json")), "not found in archive" },
        { "empty Config", () => DockerArchive(Good, ["x:1"], manifestJson: ManifestJson("")), "has no Config" },
        { "bad JSON in config", () => Tar(w =>
            {
                AddFile(w, "c.json", "{\"rootfs\": [1,2"u8.ToArray());
                AddFile(w, "manifest.json", Encoding.UTF8.GetBytes(ManifestJson("c.json")));
            }), "config c.json is not valid JSON" },
        { "layer count mismatch", () => DockerArchive(Good, ["x:1"], manifestJson: ManifestJson(Good.Id.Hex + ".json", Good.DiffIds[0].Hex + ".tar")),
            "layer count mismatch" },
        { "layer path outside the archive", () => DockerArchive(Good, ["x:1"], manifestJson: ManifestJson(Good.Id.Hex + ".json", "../a", "../b")),
            "points outside the archive" },
        { "layer digest mismatch", () => DockerArchive(Good, ["x:1"], (i, b) => i == 1 ? SmallLayer("b.txt", "evil") : b),
            "does not match its diff_id" },
        { "layer that is not a tar stream of that digest", () => DockerArchive(Good, ["x:1"], (i, b) => i == 1 ? [0x1f, 0x8b, 0x08, 0, 1, 2, 3] : b),
            "invalid archive: layer" },
        { "entry escaping with ..", () => Tar(w => AddFile(w, "../evil", "x"u8.ToArray())), "points outside the archive" },
        { "symlink escaping the archive", () => DockerArchive(Good, ["x:1"], manifestJson: ManifestJson(Good.Id.Hex + ".json", "esc/a", "esc/b"),
            extra: w => { AddLink(w, "esc/a", "../../etc/passwd"); AddLink(w, "esc/b", "/etc/passwd"); }), "not found in archive" },
        { "symlink loop", () => DockerArchive(Good, ["x:1"], manifestJson: ManifestJson(Good.Id.Hex + ".json", "l1", "l2"),
            extra: w => { AddLink(w, "l1", "l2"); AddLink(w, "l2", "l1"); }), "not found in archive" },
        { "invalid tag", () => DockerArchive(Good, ["UPPER/Case:1"]), "invalid tag" },
        { "diff_id that is not a digest", () =>
            {
                var bad = new TestImage(Good.Layers, ConfigFor(Good.Layers, ["sha256:nothex", "md5:1"]));
                return DockerArchive(bad, ["x:1"]);
            }, "invalid digest" },
        { "index.json with a tampered blob", () =>
            {
                var oci = Entries(OciLayout(Good, [null], nested: false));
                var layerHex = oci.Keys.First(k => k.StartsWith("blobs/sha256/", StringComparison.Ordinal) && oci[k].Length > 2 && oci[k][0] == 0x1f);
                return Tar(w =>
                {
                    foreach (var (name, data) in oci)
                        if (!name.EndsWith('/')) AddFile(w, name, name == layerHex ? Gzip(SmallLayer("a.txt", "evil")) : data);
                });
            }, "does not match its diff_id" },
        { "index.json with an unknown manifest type", () => Tar(w => AddFile(w, "index.json",
            Encoding.UTF8.GetBytes($$"""{"schemaVersion":2,"manifests":[{"mediaType":"text/plain","digest":"{{Good.Id}}","size":1}]}"""))),
            "unsupported manifest media type" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Refuses(string what, Func<byte[]> archive, string message)
    {
        using var temp = new TempStore();
        var ex = await Assert.ThrowsAsync<InvalidDataException>(() => new ImageArchiveReader(temp.Store).LoadAsync(new MemoryStream(archive())));
        Assert.True(ex.Message.Contains(message, StringComparison.Ordinal), $"{what}: expected '{message}' in: {ex.Message}");
        Assert.Empty(temp.SpoolLeftovers());
    }

    [Fact]
    public async Task Refuses_more_entries_than_the_cap()
    {
        using var temp = new TempStore();
        var archive = Tar(w => { for (var i = 0; i < 20; i++) AddFile(w, $"f{i}", []); });
        var reader = new ImageArchiveReader(temp.Store, new ImageArchiveLimits { MaxEntries = 10 });
        var ex = await Assert.ThrowsAsync<InvalidDataException>(() => reader.LoadAsync(new MemoryStream(archive)));
        Assert.Contains("more than 10 entries", ex.Message);
    }

    [Fact]
    public async Task Refuses_an_oversized_document()
    {
        using var temp = new TempStore();
        var archive = Tar(w => AddFile(w, "manifest.json", new byte[2048]));
        var reader = new ImageArchiveReader(temp.Store, new ImageArchiveLimits { MaxMetadataBytes = 1024 });
        var ex = await Assert.ThrowsAsync<InvalidDataException>(() => reader.LoadAsync(new MemoryStream(archive)));
        Assert.Contains("manifest.json is larger than 1024 bytes", ex.Message);
    }
}
