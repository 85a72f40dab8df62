using System.CommandLine;
using Flotilla.Cli.Commands;

var root = new RootCommand("Flotilla: a distributed container engine that speaks Docker")
{
    UpCommand.Create(),
    NodesCommand.Create(),
    AuditCommand.Create(),
    HistoryCommand.Create(),
    InspectCommand.Create(),
    new Command("registry", "The built-in registry") { RegistryUserCommand.Create() },
};
return await root.Parse(args).InvokeAsync();
