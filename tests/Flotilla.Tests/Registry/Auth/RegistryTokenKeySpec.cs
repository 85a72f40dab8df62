using Flotilla.Cluster.EventStore;
using Flotilla.Cluster.Registry;
using Flotilla.Gateway.Registry.Auth;
using Flotilla.Tests.Infrastructure;
using Marten;
using Xunit;

namespace Flotilla.Tests.Registry.Auth;

/// <summary>The token signing key lives in the shared store: every gateway of a cluster signs with the same one.</summary>
[Collection("postgres")]
public class RegistryTokenKeySpec(PostgresFixture postgres) : IAsyncLifetime
{
    private readonly List<DocumentStore> _stores = [];
    private readonly List<string> _dirs = [];
    private string _connection = "";

    public async Task InitializeAsync()
    {
        _connection = await postgres.NewDatabaseAsync("registry_token_key");
        await NewStore().Storage.ApplyAllConfiguredChangesToDatabaseAsync();
    }

    public Task DisposeAsync()
    {
        foreach (var store in _stores) store.Dispose();
        foreach (var dir in _dirs.Where(Directory.Exists)) Directory.Delete(dir, recursive: true);
        return Task.CompletedTask;
    }

    // Each gateway process has its own store (connection pool) and its own data directory.
    private DocumentStore NewStore()
    {
        var store = FlotillaStore.Create(_connection);
        _stores.Add(store);
        return store;
    }

    private string NewDataDir()
    {
        var dir = Path.Combine(Path.GetTempPath(), "flotilla-tokenkey-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        _dirs.Add(dir);
        return dir;
    }

    private RegistryTokenSource Gateway(string? dataDir = null) =>
        new(new RegistryTokenKeyStore(NewStore()), dataDir ?? NewDataDir(), RegistryAuthOptions.DefaultService, TimeSpan.FromMinutes(5));

    [Fact]
    public async Task Two_gateways_on_one_database_accept_each_others_tokens()
    {
        var first = await Gateway().GetAsync(default);
        var second = await Gateway().GetAsync(default);

        var scope = new RegistryScope("repository", "team/app", ["pull", "push"]);
        var fromFirst = first.Issue("alice", [scope], DateTimeOffset.UtcNow);
        var fromSecond = second.Issue("bob", [scope], DateTimeOffset.UtcNow);

        Assert.Equal("alice", (await second.ValidateAsync(fromFirst))?.Subject);
        Assert.True((await second.ValidateAsync(fromFirst))!.Allows(scope));
        Assert.Equal("bob", (await first.ValidateAsync(fromSecond))?.Subject);
    }

    [Fact]
    public async Task Concurrent_first_creations_yield_one_key()
    {
        var creators = Enumerable.Range(0, 8).Select(_ => new RegistryTokenKeyStore(NewStore())).ToList();
        var start = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var racing = creators.Select(c => Task.Run(async () =>
        {
            await start.Task;
            return await c.LoadOrCreateAsync(null, null);
        })).ToList();
        start.SetResult();
        var keys = await Task.WhenAll(racing);

        Assert.All(keys, k => Assert.Equal(keys[0], k));
        Assert.Equal(RegistryTokenKey.MinimumBytes, keys[0].Length);
        await using var query = _stores[0].QuerySession();
        Assert.Equal(1, await query.Query<RegistryTokenKey>().CountAsync());
    }

    [Fact]
    public async Task A_key_file_from_an_older_version_becomes_the_clusters_key_when_none_is_stored()
    {
        var dir = NewDataDir();
        var legacy = System.Security.Cryptography.RandomNumberGenerator.GetBytes(32);
        await File.WriteAllBytesAsync(Path.Combine(dir, RegistryTokenSource.LegacyKeyFile), legacy);
        var oldToken = new RegistryTokens(legacy, RegistryAuthOptions.DefaultService, TimeSpan.FromMinutes(5))
            .Issue("alice", [], DateTimeOffset.UtcNow);

        var migrated = await Gateway(dir).GetAsync(default);
        // A second data directory with another stale key file does not replace the stored key.
        var otherDir = NewDataDir();
        await File.WriteAllBytesAsync(Path.Combine(otherDir, RegistryTokenSource.LegacyKeyFile),
            System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        var other = await Gateway(otherDir).GetAsync(default);

        Assert.Equal("alice", (await migrated.ValidateAsync(oldToken))?.Subject);
        Assert.Equal("alice", (await other.ValidateAsync(oldToken))?.Subject);
        await using var query = _stores[0].QuerySession();
        var stored = await query.LoadAsync<RegistryTokenKey>(RegistryTokenKey.DocumentId);
        Assert.Equal(Path.Combine(dir, RegistryTokenSource.LegacyKeyFile), stored?.Source);
    }

    /// <summary>The key id a token was signed with, from its header.</summary>
    private static string? KidOf(string token) =>
        new Microsoft.IdentityModel.JsonWebTokens.JsonWebToken(token).Kid is { Length: > 0 } kid ? kid : null;

    [Fact]
    public async Task A_rotated_key_signs_new_tokens_the_old_one_verifies_until_retired_on_every_gateway()
    {
        // Two gateways; refresh 0 so each reads the ring again at once (30 s in a host).
        var a = new RegistryTokenSource(new RegistryTokenKeyStore(NewStore()), NewDataDir(), RegistryAuthOptions.DefaultService, TimeSpan.FromMinutes(5), TimeSpan.Zero);
        var b = new RegistryTokenSource(new RegistryTokenKeyStore(NewStore()), NewDataDir(), RegistryAuthOptions.DefaultService, TimeSpan.FromMinutes(5), TimeSpan.Zero);
        var access = new[] { new RegistryScope("repository", "r", ["pull"]) };
        // A third with the host's refresh (30 s): a token with a kid it does not know makes it re-read the ring at once.
        var c = Gateway();
        var before = (await a.GetAsync(default)).Issue("alice", access, DateTimeOffset.UtcNow);
        Assert.NotNull(await c.ValidateAsync(before, default));
        await Task.Delay(TimeSpan.FromSeconds(1.1));
        var firstKid = KidOf(before);
        Assert.NotNull(firstKid);

        var keys = new RegistryTokenKeyStore(NewStore());
        var rotated = await keys.RotateAsync();
        var after = (await b.GetAsync(default)).Issue("alice", access, DateTimeOffset.UtcNow);
        Assert.Equal(rotated.Kid, KidOf(after));
        Assert.NotEqual(firstKid, rotated.Kid);
        foreach (var gateway in new[] { a, b })
        {
            Assert.NotNull(await (await gateway.GetAsync(default)).ValidateAsync(before));
            Assert.NotNull(await (await gateway.GetAsync(default)).ValidateAsync(after));
        }
        Assert.NotNull(await c.ValidateAsync(after, default));
        Assert.Equal(rotated.Kid, KidOf((await c.GetAsync(default)).Issue("bob", access, DateTimeOffset.UtcNow)));

        var refused = await Assert.ThrowsAsync<Flotilla.Cluster.OperationRejectedException>(() => keys.RetireAsync(rotated.Kid));
        Assert.Contains("rotate", refused.Message);
        await keys.RetireAsync(firstKid!);
        foreach (var gateway in new[] { a, b })
        {
            Assert.Null(await (await gateway.GetAsync(default)).ValidateAsync(before));
            Assert.NotNull(await (await gateway.GetAsync(default)).ValidateAsync(after));
        }
        Assert.Equal([rotated.Kid], (await keys.LoadRingAsync(null, null)).Keys.Select(k => k.Kid));
    }

    [Fact]
    public async Task A_token_without_kid_from_an_older_version_still_verifies()
    {
        var gateway = Gateway();
        var key = (await gateway.GetAsync(default)).Ring.Signing.Key;
        // As the previous version signed: the same key, no kid in the header.
        var handler = new Microsoft.IdentityModel.JsonWebTokens.JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false };
        var now = DateTime.UtcNow;
        var old = handler.CreateToken(new Microsoft.IdentityModel.Tokens.SecurityTokenDescriptor
        {
            Issuer = RegistryTokens.Issuer,
            Audience = RegistryAuthOptions.DefaultService,
            IssuedAt = now,
            NotBefore = now,
            Expires = now.AddMinutes(5),
            SigningCredentials = new Microsoft.IdentityModel.Tokens.SigningCredentials(new Microsoft.IdentityModel.Tokens.SymmetricSecurityKey(key),
                Microsoft.IdentityModel.Tokens.SecurityAlgorithms.HmacSha256),
            Claims = new Dictionary<string, object> { ["sub"] = "alice" },
        });
        Assert.Null(KidOf(old));
        Assert.Equal("alice", (await (await gateway.GetAsync(default)).ValidateAsync(old))?.Subject);
    }
}
