using Marten;
using Marten.Services;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Flotilla.Cluster.EventStore;

/// <summary>
/// Marten's command log, without the alarm for races Flotilla expects and handles: a unique violation (PostgreSQL
/// 23505: two hosts appending the same stream version, such as both recording that a peer left, or a taken container
/// name) is answered by the journal as a conflict, so it is logged at debug. Any other failure is an error, in one
/// line; the caller gets the exception too.
/// </summary>
public sealed class MartenLog(ILogger logger) : IMartenLogger, IMartenSessionLogger
{
    public IMartenSessionLogger StartSession(IQuerySession session) => this;

    public void SchemaChange(string sql) => logger.LogInformation("schema change: {Sql}", sql);

    public void LogSuccess(NpgsqlCommand command)
    {
    }

    public void LogSuccess(NpgsqlBatch batch)
    {
    }

    public void LogFailure(NpgsqlCommand command, Exception ex) => Failure(ex);

    public void LogFailure(NpgsqlBatch batch, Exception ex) => Failure(ex);

    public void LogFailure(Exception ex, string message) => Failure(ex);

    public void RecordSavedChanges(IDocumentSession session, IChangeSet commit)
    {
    }

    public void OnBeforeExecute(NpgsqlCommand command)
    {
    }

    public void OnBeforeExecute(NpgsqlBatch batch)
    {
    }

    private void Failure(Exception ex)
    {
        if (IsConflict(ex)) logger.LogDebug("conflict, handled by the caller: {Message}", ex.Message);
        else logger.LogError("command failed: {Message}", ex.Message);
    }

    private static bool IsConflict(Exception ex) => ex switch
    {
        PostgresException { SqlState: PostgresErrorCodes.UniqueViolation } => true,
        _ when ex.InnerException is not null => IsConflict(ex.InnerException),
        _ => false,
    };
}
