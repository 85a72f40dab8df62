using System.CommandLine;
using Flotilla.Cli.Commands;

var root = new RootCommand("Flotilla: a distributed container engine that speaks Docker")
{
    UpCommand.Create(),
    ClusterCommands.Node(),
    ClusterCommands.Gateway(),
    PkiCommands.Create(),
    NodesCommand.Create(),
    AuditCommand.Create(),
    HistoryCommand.Create(),
    InspectCommand.Create(),
    LedgerCommands.Replay(),
    RegistryCommand.Create(),
    WatchdogCommand.Create(),
    DbCommand.Create(),
};
return await root.Parse(args).InvokeAsync();
