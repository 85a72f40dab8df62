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
        await _users.AddAsync("alice", "s3cret-pass", ["pull", "push"], Operator);

        Assert.True(await _users.AnyUsersAsync());
        Assert.Equal("alice", (await _users.AuthenticateAsync("alice", "s3cret-pass"))?.Name);
        Assert.Null(await _users.AuthenticateAsync("alice", "wrong"));
        Assert.Null(await _users.AuthenticateAsync("nobody", "s3cret-pass"));
    }

    [Fact]
    public async Task The_password_is_stored_only_as_a_salted_hash()
    {
        await _users.AddAsync("carol", "hunter2-pass", ["pull"], Operator);
        await using var session = _store.QuerySession();
        var events = await session.Events.FetchStreamAsync(RegistryUserStreams.Key("carol"));
        var added = Assert.IsType<RegistryUserAdded>(Assert.Single(events).Data);
        Assert.DoesNotContain("hunter2-pass", added.PasswordHash);
        Assert.StartsWith("pbkdf2-sha256$", added.PasswordHash);
        Assert.Equal("local", events[0].UserName);
        Assert.NotEqual(PasswordHasher.Hash("hunter2-pass"), PasswordHasher.Hash("hunter2-pass"));
    }

    [Fact]
    public async Task Adding_an_existing_user_is_a_conflict_and_bad_input_is_refused()
    {
        await _users.AddAsync("bob", "first-password", ["pull"], Operator);
        var conflict = await Assert.ThrowsAsync<OperationRejectedException>(() => _users.AddAsync("bob", "second-password", ["pull"], Operator));
        Assert.Equal(RejectionCode.Conflict, conflict.Code);
        foreach (var (name, rights) in new[] { ("Bob", new[] { "pull" }), ("../x", ["pull"]), ("", ["pull"]), ("dave", ["admin"]), ("dave", []) })
        {
            var bad = await Assert.ThrowsAsync<OperationRejectedException>(() => _users.AddAsync(name, "first-password", rights, Operator));
            Assert.Equal(RejectionCode.InvalidArgument, bad.Code);
        }
        Assert.Equal(RejectionCode.InvalidArgument,
            (await Assert.ThrowsAsync<OperationRejectedException>(() => _users.AddAsync("erin", "", ["pull"], Operator))).Code);
    }

    [Fact]
    public async Task Password_change_and_removal_are_events_and_a_removed_user_can_come_back()
    {
        await _users.AddAsync("dan", "password-one", ["pull", "push", "delete"], Operator);
        await _users.SetPasswordAsync("dan", "password-two", Operator);
        Assert.Null(await _users.AuthenticateAsync("dan", "password-one"));
        Assert.NotNull(await _users.AuthenticateAsync("dan", "password-two"));

        await _users.RemoveAsync("dan", Operator);
        Assert.Null(await _users.AuthenticateAsync("dan", "password-two"));
        Assert.DoesNotContain(await _users.ListAsync(), u => u.Name == "dan");
        await Assert.ThrowsAsync<OperationRejectedException>(() => _users.RemoveAsync("dan", Operator));

        await _users.AddAsync("dan", "password-three", ["pull"], Operator);
        Assert.Equal(["pull"], (await _users.AuthenticateAsync("dan", "password-three"))!.Rights);

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

    [Theory]
    [InlineData("frank", "short", "too short")]
    [InlineData("frank", "1234567", "too short")]
    [InlineData("frankfurt", "FrankFurt", "must not be the user name")]
    public async Task A_weak_password_is_refused_with_a_clear_error(string name, string password, string message)
    {
        var refused = await Assert.ThrowsAsync<OperationRejectedException>(() => _users.AddAsync(name, password, ["pull"], Operator));
        Assert.Equal(RejectionCode.InvalidArgument, refused.Code);
        Assert.Contains(message, refused.Message);
        await _users.AddAsync(name, "a-good-password", ["pull"], Operator);
        refused = await Assert.ThrowsAsync<OperationRejectedException>(() => _users.SetPasswordAsync(name, password, Operator));
        Assert.Contains(message, refused.Message);
    }

    [Fact]
    public async Task An_old_hash_still_verifies_and_is_redone_with_600000_iterations_at_login()
    {
        await _users.AddAsync("gina", "gina-password", ["pull"], Operator);
        Assert.Contains($"${PasswordHasher.Iterations}$", (await _users.AuthenticateAsync("gina", "gina-password"))!.PasswordHash);
        Assert.True(PasswordHasher.Iterations >= 600_000);

        // A hash as the previous version made it (100,000 iterations), written as its event was.
        var journal = new MartenEventJournal(_store);
        var stream = await journal.ReadAsync(RegistryUserStreams.Key("gina"));
        await journal.AppendAsync(RegistryUserStreams.Key("gina"), stream.Version,
            [new RegistryUserPasswordChanged("gina", PasswordHasher.Hash("gina-password", 100_000), DateTimeOffset.UtcNow)],
            EventMetadata.From(Operator, "node-a"));

        Assert.Null(await _users.AuthenticateAsync("gina", "wrong-password"));
        var user = await _users.AuthenticateAsync("gina", "gina-password");
        Assert.NotNull(user);
        await using var session = _store.QuerySession();
        var events = await session.Events.FetchStreamAsync(RegistryUserStreams.Key("gina"));
        var rehashed = Assert.IsType<RegistryUserPasswordRehashed>(events[^1].Data);
        Assert.Contains("$600000$", rehashed.PasswordHash);
        Assert.Equal(RequestOrigin.SystemUser, events[^1].UserName);
        Assert.NotNull(await _users.AuthenticateAsync("gina", "gina-password"));
        // Already current: no second rehash.
        Assert.Equal(events.Count, (await session.Events.FetchStreamAsync(RegistryUserStreams.Key("gina"))).Count);
    }

    [Fact]
    public async Task A_denial_is_appended_without_reading_the_stream_and_survives_another_writer()
    {
        await _users.RecordDenialAsync(new RegistryAccessDenied("anonymous", "r", ["push"], "x", null, DateTimeOffset.UtcNow), Operator);
        // Another gateway (its own service and journal) appends meanwhile: this one's remembered version is stale.
        var other = new RegistryUserService(_store, new MartenEventJournal(_store), "node-b");
        await other.RecordDenialAsync(new RegistryAccessDenied("anonymous", "r", ["push"], "y", null, DateTimeOffset.UtcNow), Operator);
        await _users.RecordDenialAsync(new RegistryAccessDenied("anonymous", "r", ["push"], "z", null, DateTimeOffset.UtcNow), Operator);
        await using var session = _store.QuerySession();
        var reasons = (await session.Events.FetchStreamAsync(RegistryUserStreams.Access)).Select(e => ((RegistryAccessDenied)e.Data).Reason);
        Assert.Equal(["x", "y", "z"], reasons);
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

        await _users.AddAsync("first", "first-password", ["pull"], Operator);
        Assert.False(await anonymousPull.IsOpenAsync(default)); // a user exists: no longer open
    }

    [Fact]
    public async Task Rights_hold_only_on_the_repositories_a_pattern_matches()
    {
        var closed = new RegistryAuthPolicy(new RegistryAuthOptions("s", LoopbackOnly: false, AnonymousPull: false), _users);
        var anonymousPull = new RegistryAuthPolicy(new RegistryAuthOptions("s", LoopbackOnly: false, AnonymousPull: true), _users);
        await _users.AddAsync("teamer", "teamer-password", ["pull", "push"], Operator, repositories: ["team/*", "shared/base"]);
        var teamer = (await _users.AuthenticateAsync("teamer", "teamer-password"))!;
        Assert.Equal(["team/*", "shared/base"], teamer.Repositories);

        RegistryScope Scope(string name) => new("repository", name, ["pull", "push"]);
        Assert.Equal("repository:team/app:pull,push", closed.Grant(Scope("team/app"), teamer, open: false)?.ToString());
        Assert.Equal("repository:team/a/b:pull,push", closed.Grant(Scope("team/a/b"), teamer, open: false)?.ToString());
        Assert.Equal("repository:shared/base:pull,push", closed.Grant(Scope("shared/base"), teamer, open: false)?.ToString());
        Assert.Null(closed.Grant(Scope("other/app"), teamer, open: false));
        Assert.Null(closed.Grant(Scope("teamx/app"), teamer, open: false));
        // A user gets its own rights only, even where anyone may pull; the catalog (every name) is not for a user
        // limited to some repositories.
        Assert.Null(anonymousPull.Grant(Scope("other/app"), teamer, open: false));
        Assert.Null(closed.Grant(RegistryScope.Catalog, teamer, open: false));

        // The default is every repository, and says so.
        Assert.Equal(["*"], (await _users.AddAsync("everyone", "everyone-password", ["pull"], Operator)).Repositories);

        foreach (var bad in new[] { new string[0], ["team/"], ["Team/*"], ["team/?"] })
            Assert.Equal(RejectionCode.InvalidArgument, (await Assert.ThrowsAsync<OperationRejectedException>(
                () => _users.AddAsync("badpattern", "a-good-password", ["pull"], Operator, repositories: bad))).Code);
        Assert.DoesNotContain(await _users.ListAsync(), u => u.Name == "badpattern");
    }

    [Fact]
    public async Task A_user_added_before_per_repository_rights_still_has_every_repository()
    {
        // The event as the previous version wrote it: no Repositories field at all.
        var journal = new MartenEventJournal(_store);
        await journal.AppendAsync(RegistryUserStreams.Key("oldie"), 0,
            [new RegistryUserAdded("oldie", PasswordHasher.Hash("oldie-password"), ["pull", "push"], DateTimeOffset.UtcNow)],
            EventMetadata.From(Operator, "node-a"));
        await using (var session = _store.QuerySession())
        {
            var raw = await session.Events.FetchStreamAsync(RegistryUserStreams.Key("oldie"));
            Assert.Null(Assert.IsType<RegistryUserAdded>(Assert.Single(raw).Data).Repositories);
        }

        var oldie = (await _users.AuthenticateAsync("oldie", "oldie-password"))!;
        Assert.Null(oldie.Repositories);
        var closed = new RegistryAuthPolicy(new RegistryAuthOptions("s", LoopbackOnly: false, AnonymousPull: false), _users);
        foreach (var name in new[] { "app", "team/app", "other/a/b" })
            Assert.Equal($"repository:{name}:pull,push", closed.Grant(new RegistryScope("repository", name, ["pull", "push", "delete"]), oldie, open: false)?.ToString());
        Assert.NotNull(closed.Grant(RegistryScope.Catalog, oldie, open: false));
    }
}
