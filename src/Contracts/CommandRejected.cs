using Flotilla.Contracts.Wire;
using MessagePack;

namespace Flotilla.Contracts;

/// <summary>Why a command was refused. Codes map onto HTTP statuses at the gateway.</summary>
public enum RejectionCode
{
    NotModified = 304,
    InvalidArgument = 400,
    NotFound = 404,
    Conflict = 409,
    Unavailable = 503,
    Internal = 500,
}

[MessagePackObject(true)]
public sealed record CommandRejected(RejectionCode Code, string Message) : IFlotillaMessage;
