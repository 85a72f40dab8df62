namespace Flotilla.Contracts; public interface IFlotillaMessage { }
