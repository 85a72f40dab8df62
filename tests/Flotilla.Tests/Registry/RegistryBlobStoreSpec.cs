using System.Security.Cryptography;
using Flotilla.NodeRuntime.Registry;
using Flotilla.NodeRuntime.Storage;
using Xunit;

namespace Flotilla.Tests.Registry;

/// <summary>Uploads on disk: resumable across instances (a restart), verified before they are visible.</summary>
public sealed class RegistryBlobStoreSpec : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "flotilla-regstore-" + Guid.NewGuid().ToString("N")[..8]);

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private static byte[] Random(int size)
    {
        var data = new byte[size];
        System.Random.Shared.NextBytes(data);
        return data;
    }

    private static MemoryStream Body(byte[] data, int offset = 0, int? count = null) => new(data, offset, count ?? data.Length - offset);

    [Fact]
    public async Task An_upload_continues_in_a_new_instance_and_drops_a_torn_chunk()
    {
        var data = Random(300_000);
        var first = new RegistryBlobStore(_root);
        var session = first.StartUpload("a/b");
        await first.AppendAsync(session, Body(data, 0, 100_000), 0, 100_000);
        // A crash mid-chunk leaves bytes past the acknowledged offset.
        await using (var file = new FileStream(session.DataPath, FileMode.Append)) await file.WriteAsync(data.AsMemory(100_000, 5000));

        var second = new RegistryBlobStore(_root);
        Assert.Null(await second.FindUploadAsync(session.Id, "other/repo"));
        var resumed = await second.FindUploadAsync(session.Id, "a/b");
        Assert.NotNull(resumed);
        Assert.Equal(100_000, resumed.Offset);
        await second.AppendAsync(resumed, Body(data, 100_000, 100_000), 100_000, 100_000);
        var blob = await second.CompleteAsync(resumed, Digest.Of(data), Body(data, 200_000), null);

        Assert.Equal(data.Length, blob.Size);
        Assert.Equal(data, await File.ReadAllBytesAsync(second.PathOf(Digest.Of(data))));
        Assert.Equal(0, second.UploadCount);
    }

    [Fact]
    public async Task A_chunk_out_of_order_is_refused_and_changes_nothing()
    {
        var store = new RegistryBlobStore(_root);
        var session = store.StartUpload("r");
        await store.AppendAsync(session, Body(Random(10)), 0, 10);
        var ex = await Assert.ThrowsAsync<UploadRangeException>(() => store.AppendAsync(session, Body(Random(10)), 20, 10));
        Assert.Equal(10, ex.Offset);
        await Assert.ThrowsAsync<UploadRangeException>(() => store.AppendAsync(session, Body(Random(10)), 0, 10));
        // A body shorter than announced is refused too, and truncated away.
        await Assert.ThrowsAsync<UploadRangeException>(() => store.AppendAsync(session, Body(Random(5)), 10, 10));
        Assert.Equal(10, session.Offset);
        Assert.Equal(10, new FileInfo(session.DataPath).Length);
    }

    [Fact]
    public async Task A_wrong_digest_publishes_nothing_and_ends_the_upload()
    {
        var store = new RegistryBlobStore(_root);
        var data = Random(1000);
        var session = store.StartUpload("r");
        await store.AppendAsync(session, Body(data), null, null);
        var wrong = Digest.Of(Random(10));
        await Assert.ThrowsAsync<DigestMismatchException>(() => store.CompleteAsync(session, wrong, null, null));
        Assert.Empty(store.ListBlobs());
        Assert.Equal(0, store.UploadCount);
        Assert.Null(await store.FindUploadAsync(session.Id, "r"));
    }

    [Fact]
    public async Task Abandoned_uploads_are_invisible_until_purged()
    {
        var store = new RegistryBlobStore(_root);
        var data = Random(1000);
        var session = store.StartUpload("r");
        await store.AppendAsync(session, Body(data), null, null);
        Assert.Empty(store.ListBlobs());
        Assert.False(store.Content.Exists(Digest.Of(data)));

        Assert.Empty(store.PurgeAbandonedUploads(DateTime.UtcNow.AddHours(-1)));
        Assert.Equal([session.Id], store.PurgeAbandonedUploads(DateTime.UtcNow.AddSeconds(1)));
        Assert.Equal(0, store.UploadCount);
        await Assert.ThrowsAsync<UploadUnknownException>(() => store.AppendAsync(session, Body(data), null, null));
    }

    [Fact]
    public async Task Pinned_and_recent_blobs_survive_a_sweep()
    {
        var store = new RegistryBlobStore(_root);
        var data = Random(100);
        var blob = await store.UploadAsync("r", Body(data), Digest.Of(data), data.Length);
        using (store.Pin(blob.Digest)) Assert.False(store.DeleteIfUnused(blob.Digest, DateTime.UtcNow.AddMinutes(1)));
        Assert.False(store.DeleteIfUnused(blob.Digest, DateTime.UtcNow.AddMinutes(-1)));
        Assert.True(store.DeleteIfUnused(blob.Digest, DateTime.UtcNow.AddMinutes(1)));
        Assert.False(store.Content.Exists(blob.Digest));
    }

    [Fact]
    public async Task Concurrent_chunks_on_one_session_are_serialized()
    {
        var store = new RegistryBlobStore(_root);
        var session = store.StartUpload("r");
        var chunks = Enumerable.Range(0, 8).Select(_ => Random(50_000)).ToList();
        await Task.WhenAll(chunks.Select(c => Task.Run(() => store.AppendAsync(session, Body(c), null, null))));
        Assert.Equal(400_000, session.Offset);
        var written = await File.ReadAllBytesAsync(session.DataPath);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(written);
        var blob = await store.CompleteAsync(session, Digest.FromHash(sha.GetHashAndReset()), null, null);
        Assert.Equal(400_000, blob.Size);
    }
}
