using Flotilla.Cluster.EventStore;
using Microsoft.Extensions.Logging;
using Npgsql;
using Xunit;

namespace Flotilla.Tests.EventStore;

/// <summary>
/// Races the journal answers as conflicts (two hosts appending the same stream version: PostgreSQL 23505) are not
/// failures on the console: Marten's command log puts them at debug, one line. Regression for issue 15 item 6
/// ("fail: Marten.IDocumentStore … 23505 duplicate key" with a stack trace when two nodes both recorded NodeLeft).
/// </summary>
public class MartenLogSpec
{
    private sealed class Recorder : ILogger
    {
        public List<(LogLevel Level, string Message, Exception? Exception)> Entries { get; } = [];
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Entries.Add((logLevel, formatter(state, exception), exception));
    }

    private static PostgresException Postgres(string sqlState, string message) =>
        new(message, "ERROR", "ERROR", sqlState, tableName: "mt_events", constraintName: "pk_mt_events_stream_and_version");

    [Fact]
    public void A_duplicate_stream_version_is_a_debug_line_and_another_failure_an_error_without_stack()
    {
        var recorder = new Recorder();
        var log = new MartenLog(recorder);
        using var command = new NpgsqlCommand("select 1");
        log.LogFailure(command, new Marten.Exceptions.MartenCommandException(command, Postgres(PostgresErrorCodes.UniqueViolation, "duplicate key value violates unique constraint")));
        log.LogFailure(command, Postgres(PostgresErrorCodes.UndefinedTable, "relation does not exist"));

        Assert.Equal(LogLevel.Debug, recorder.Entries[0].Level);
        Assert.Equal(LogLevel.Error, recorder.Entries[1].Level);
        Assert.Contains("relation does not exist", recorder.Entries[1].Message);
        Assert.All(recorder.Entries, e => Assert.Null(e.Exception));
    }
}
