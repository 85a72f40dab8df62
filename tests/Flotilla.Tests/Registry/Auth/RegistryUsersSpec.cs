using Flotilla.Cluster;
using Flotilla.Cluster.EventStore;
using Flotilla.Cluster.Registry;
using Flotilla.Contracts;
using Flotilla.Contracts.Registry;
using Flotilla.Gateway.Registry.Auth;
using Flotilla.Tests.Infrastructure;
using Marten;
using Xunit;

namespace Flotilla.Tests.Registry.Auth;

[Collection("postgres")]
public class RegistryUsersSpec(PostgresFixture postgres) : IAsyncLifetime
{
    private DocumentStore _store = null!;
    private RegistryUserService _users = null!;
    private static readonly RequestOrigin Operator = new("local", "req-1");

    public async Task InitializeAsync()
    {
        _store = FlotillaStore.Create(await postgres.NewDatabaseAsync("registry_users"));
        await _store.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
        _users = new RegistryUserService(_store, new MartenEventJournal(_store), "node-a");
    }

    public Task DisposeAsync()
    {
        _store.Dispose();
        return Task.CompletedTask;
    }

    [Fact]
    public async Task A_user_authenticates_with_its_password_only()
    {
        Assert.False(await _users.AnyUsersAsync());
        await _users.AddAsync("alice", "s3cret", ["pull", "push"], Operator);

        Assert.True(await _users.AnyUsersAsync());
        Assert.Equal("alice", (await _users.AuthenticateAsync("alice", "s3cret"))?.Name);
        Assert.Null(await _users.AuthenticateAsync("alice", "wrong"));
        Assert.Null(await _users.AuthenticateAsync("nobody", "s3cret"));
    }

    [Fact]
    public async Task The_password_is_stored_only_as_a_salted_hash()
    {
        await _users.AddAsync("carol", "hunter2", ["pull"], Operator);
        await using var session = _store.QuerySession();
        var events = await session.Events.FetchStreamAsync(RegistryUserStreams.Key("carol"));
        var added = Assert.IsType<RegistryUserAdded>(Assert.Single(events).Data);
        Assert.DoesNotContain("hunter2", added.PasswordHash);
        Assert.StartsWith("pbkdf2-sha256$", added.PasswordHash);
        Assert.Equal("local", events[0].UserName);
        Assert.NotEqual(PasswordHasher.Hash("hunter2"), PasswordHasher.Hash("hunter2"));
    }

    [Fact]
    public async Task Adding_an_existing_user_is_a_conflict_and_bad_input_is_refused()
    {
        await _users.AddAsync("bob", "pw", ["pull"], Operator);
        var conflict = await Assert.ThrowsAsync<OperationRejectedException>(() => _users.AddAsync("bob", "pw2", ["pull"], Operator));
        Assert.Equal(RejectionCode.Conflict, conflict.Code);
        foreach (var (name, rights) in new[] { ("Bob", new[] { "pull" }), ("../x", ["pull"]), ("", ["pull"]), ("dave", ["admin"]), ("dave", []) })
        {
            var bad = await Assert.ThrowsAsync<OperationRejectedException>(() => _users.AddAsync(name, "pw", rights, Operator));
            Assert.Equal(RejectionCode.InvalidArgument, bad.Code);
        }
        Assert.Equal(RejectionCode.InvalidArgument,
            (await Assert.ThrowsAsync<OperationRejectedException>(() => _users.AddAsync("erin", "", ["pull"], Operator))).Code);
    }

    [Fact]
    public async Task Password_change_and_removal_are_events_and_a_removed_user_can_come_back()
    {
        await _users.AddAsync("dan", "one", ["pull", "push", "delete"], Operator);
        await _users.SetPasswordAsync("dan", "two", Operator);
        Assert.Null(await _users.AuthenticateAsync("dan", "one"));
        Assert.NotNull(await _users.AuthenticateAsync("dan", "two"));

        await _users.RemoveAsync("dan", Operator);
        Assert.Null(await _users.AuthenticateAsync("dan", "two"));
        Assert.DoesNotContain(await _users.ListAsync(), u => u.Name == "dan");
        await Assert.ThrowsAsync<OperationRejectedException>(() => _users.RemoveAsync("dan", Operator));

        await _users.AddAsync("dan", "three", ["pull"], Operator);
        Assert.Equal(["pull"], (await _users.AuthenticateAsync("dan", "three"))!.Rights);

        await using var session = _store.QuerySession();
        var kinds = (await session.Events.FetchStreamAsync(RegistryUserStreams.Key("dan"))).Select(e => e.Data.GetType().Name);
        Assert.Equal(["RegistryUserAdded", "RegistryUserPasswordChanged", "RegistryUserRemoved", "RegistryUserAdded"], kinds);
    }

    [Fact]
    public async Task Denials_are_recorded_with_who_and_why()
    {
        await Task.WhenAll(Enumerable.Range(0, 4).Select(i => _users.RecordDenialAsync(
            new RegistryAccessDenied("anonymous", "repository:team/app", ["push"], "authentication required", "127.0.0.1", DateTimeOffset.UtcNow),
            new RequestOrigin("anonymous", $"req-{i}"))));

        await using var session = _store.QuerySession();
        var events = await session.Events.FetchStreamAsync(RegistryUserStreams.Access);
        Assert.Equal(4, events.Count);
        Assert.All(events, e => Assert.Equal("anonymous", e.UserName));
        Assert.Equal(["push"], Assert.IsType<RegistryAccessDenied>(events[0].Data).Actions);
    }

    [Fact]
    public async Task The_policy_grants_by_mode_rights_and_anonymous_pull()
    {
        var closed = new RegistryAuthPolicy(new RegistryAuthOptions("s", LoopbackOnly: false, AnonymousPull: false), _users);
        var anonymousPull = new RegistryAuthPolicy(new RegistryAuthOptions("s", LoopbackOnly: true, AnonymousPull: true), _users);
        var reader = new RegistryUserView { Name = "r", Rights = ["pull"] };
        var writer = new RegistryUserView { Name = "w", Rights = ["pull", "push"] };
        var pullPush = new RegistryScope("repository", "a", ["pull", "push"]);

        Assert.True(await anonymousPull.IsOpenAsync(default)); // loopback, no users yet
        Assert.False(await closed.IsOpenAsync(default));
        Assert.Equal("repository:a:pull,push", anonymousPull.Grant(pullPush, null, open: true)?.ToString());

        Assert.Null(closed.Grant(pullPush, null, open: false));
        Assert.Equal("repository:a:pull", anonymousPull.Grant(pullPush, null, open: false)?.ToString());
        Assert.Equal("repository:a:pull", closed.Grant(pullPush, reader, open: false)?.ToString());
        Assert.Equal("repository:a:pull,push", closed.Grant(pullPush, writer, open: false)?.ToString());
        Assert.Null(closed.Grant(new RegistryScope("repository", "a", ["delete"]), writer, open: false));
        Assert.Null(closed.Grant(RegistryScope.Catalog, null, open: false));
        Assert.NotNull(closed.Grant(RegistryScope.Catalog, reader, open: false));
        Assert.NotNull(anonymousPull.Grant(RegistryScope.Catalog, null, open: false));
        Assert.Null(closed.Grant(new RegistryScope("unknown", "x", ["pull"]), writer, open: false));

        await _users.AddAsync("first", "pw", ["pull"], Operator);
        Assert.False(await anonymousPull.IsOpenAsync(default)); // a user exists: no longer open
    }
}
