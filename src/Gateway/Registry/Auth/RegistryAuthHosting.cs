using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace Flotilla.Gateway.Registry.Auth;

public static class RegistryAuthHosting
{
    /// <summary>Token keys (kept under <c>&lt;data&gt;/registry</c>), the policy and its options.</summary>
    /// <param name="anonymousPull"><c>auto</c> (allowed when the registry listens only on loopback), <c>true</c> or <c>false</c>.</param>
    public static void AddRegistryAuth(this WebApplicationBuilder builder, IPEndPoint registry, string dataRoot, string anonymousPull)
    {
        var loopbackOnly = IPAddress.IsLoopback(registry.Address);
        var anonymous = anonymousPull.ToLowerInvariant() switch
        {
            "auto" or "" => loopbackOnly,
            "true" or "1" or "yes" => true,
            "false" or "0" or "no" => false,
            _ => throw new ArgumentException($"--registry-anonymous-pull: expected auto, true or false, not '{anonymousPull}'"),
        };
        var options = new RegistryAuthOptions(RegistryAuthOptions.DefaultService, loopbackOnly, anonymous);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(new RegistryTokens(RegistryTokens.LoadOrCreateKey(Path.Combine(dataRoot, "registry")),
            options.Service, TimeSpan.FromMinutes(5)));
        builder.Services.AddSingleton<RegistryAuthPolicy>();
    }
}
