using Flotilla.Contracts;

namespace Flotilla.Cluster;

/// <summary>A refused operation, with the code the API surfaces map to a status.</summary>
public sealed class OperationRejectedException(RejectionCode code, string message) : Exception(message)
{
    public RejectionCode Code { get; } = code;
}
