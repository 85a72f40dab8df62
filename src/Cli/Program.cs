using System.CommandLine;
using Flotilla.Cli.Commands;

var root = new RootCommand("Flotilla: a distributed container engine that speaks Docker")
{
    UpCommand.Create(),
    NodesCommand.Create(),
    new Command("audit", "The audit log") { LedgerCommands.Verify() },
    LedgerCommands.Replay(),
    RegistryCommand.Create(),
};
return await root.Parse(args).InvokeAsync();
