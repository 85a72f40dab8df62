using MessagePack;

namespace Flotilla.Contracts;

/// <summary>Who asked for a change, and which API request it came from.</summary>
/// <param name="User">Authenticated user, or "system" for internal work.</param>
/// <param name="CorrelationId">Id of the originating API request.</param>
/// <param name="CausationId">Id of the message that caused this one, if any.</param>
[MessagePackObject(true)]
public sealed record RequestOrigin(string User, string CorrelationId, string? CausationId = null)
{
    public const string SystemUser = "system";

    public static RequestOrigin System(string? correlationId = null) =>
        new(SystemUser, correlationId ?? Guid.NewGuid().ToString("N"));
}
