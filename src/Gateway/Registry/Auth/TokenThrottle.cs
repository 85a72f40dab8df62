using System.Threading.RateLimiting;

namespace Flotilla.Gateway.Registry.Auth;

/// <summary>Limits of the token realm; the defaults leave room for a CI machine pushing many images at once.</summary>
/// <param name="PerAddress">Token requests a client address may burst.</param>
/// <param name="PerAddressRefill">Token requests an address gets back per <paramref name="RefillPeriod"/>.</param>
/// <param name="PerUser">Token requests a user name may burst, from any address (anonymous callers: per address only).</param>
/// <param name="PerUserRefill">Token requests a user gets back per <paramref name="RefillPeriod"/>.</param>
/// <param name="FailedLogins">Wrong passwords a user name may collect before its logins are refused for a while.</param>
/// <param name="FailedLoginRecovery">How long it takes to get one failed login back (default 30 s).</param>
/// <param name="RefillPeriod">Default one second.</param>
public sealed record TokenThrottleOptions(
    int PerAddress = 200, int PerAddressRefill = 50,
    int PerUser = 200, int PerUserRefill = 50,
    int FailedLogins = 10, TimeSpan? FailedLoginRecovery = null, TimeSpan? RefillPeriod = null);

/// <summary>
/// Rate limits of <c>/token</c> (System.Threading.RateLimiting token buckets, partitioned): per client address and
/// per user, and a budget of failed logins per user name, so passwords cannot be guessed at PBKDF2 speed.
/// </summary>
public sealed class TokenThrottle : IDisposable
{
    private readonly PartitionedRateLimiter<TokenCaller> _requests;
    private readonly PartitionedRateLimiter<string> _failures;
    private readonly PartitionedRateLimiter<string> _throttleRecords;
    // PBKDF2 costs a few hundred ms of one core: at most one per core at a time, a short queue, the rest refused.
    private readonly ConcurrencyLimiter _hashing = new(new ConcurrencyLimiterOptions
    {
        PermitLimit = Environment.ProcessorCount,
        QueueLimit = 4 * Environment.ProcessorCount,
        QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
    });

    public TokenThrottle(TokenThrottleOptions options)
    {
        var period = options.RefillPeriod ?? TimeSpan.FromSeconds(1);
        var byAddress = PartitionedRateLimiter.Create<TokenCaller, string>(c =>
            RateLimitPartition.GetTokenBucketLimiter("a:" + c.Address, _ => Bucket(options.PerAddress, options.PerAddressRefill, period)));
        // Anonymous callers share no bucket: one address could otherwise use up everyone's; their addresses limit them.
        var byUser = PartitionedRateLimiter.Create<TokenCaller, string>(c => c.User == TokenCaller.Anonymous
            ? RateLimitPartition.GetNoLimiter("anonymous")
            : RateLimitPartition.GetTokenBucketLimiter("u:" + c.User, _ => Bucket(options.PerUser, options.PerUserRefill, period)));
        _requests = PartitionedRateLimiter.CreateChained(byAddress, byUser);
        _failures = PartitionedRateLimiter.Create<string, string>(user =>
            RateLimitPartition.GetTokenBucketLimiter(user, _ => Bucket(options.FailedLogins, 1, options.FailedLoginRecovery ?? TimeSpan.FromSeconds(30))));
        _throttleRecords = PartitionedRateLimiter.Create<string, string>(address =>
            RateLimitPartition.GetTokenBucketLimiter(address, _ => Bucket(1, 1, RecordThrottledEvery)));
    }

    /// <summary>A flood's refusals are recorded once per address and user name in this time, not one event per request.</summary>
    public static readonly TimeSpan RecordThrottledEvery = TimeSpan.FromSeconds(10);

    /// <summary>Should this throttled request be recorded (the first of its address and user in <see cref="RecordThrottledEvery"/>)?</summary>
    public bool RecordThrottled(string address, string user)
    {
        using var lease = _throttleRecords.AttemptAcquire(address + " " + user);
        return lease.IsAcquired;
    }

    private static TokenBucketRateLimiterOptions Bucket(int limit, int perPeriod, TimeSpan period) => new()
    {
        TokenLimit = Math.Max(limit, 1),
        TokensPerPeriod = Math.Max(perPeriod, 1),
        ReplenishmentPeriod = period,
        QueueLimit = 0,
        AutoReplenishment = true,
    };

    /// <summary>Takes one request's permit; false (with when to retry) when the address or the user is over its limit.</summary>
    public bool TryRequest(TokenCaller caller, out TimeSpan? retryAfter)
    {
        using var lease = _requests.AttemptAcquire(caller);
        retryAfter = lease.TryGetMetadata(MetadataName.RetryAfter, out var after) ? after : null;
        return lease.IsAcquired;
    }

    /// <summary>Has this user name run out of failed logins? Then even the right password is not tried.</summary>
    public bool LoginsBlocked(string user) => _failures.GetStatistics(user) is { CurrentAvailablePermits: <= 0 };

    /// <summary>A turn at checking a password; not acquired when too many are waiting.</summary>
    public ValueTask<RateLimitLease> HashingTurnAsync(CancellationToken cancellationToken) => _hashing.AcquireAsync(1, cancellationToken);

    public void LoginFailed(string user)
    {
        using var _ = _failures.AttemptAcquire(user);
    }

    public void Dispose()
    {
        _requests.Dispose();
        _failures.Dispose();
        _throttleRecords.Dispose();
        _hashing.Dispose();
    }
}

/// <param name="User">The user name asked for, or <see cref="Anonymous"/>.</param>
public sealed record TokenCaller(string Address, string User)
{
    public const string Anonymous = "anonymous";
}
