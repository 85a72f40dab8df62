using System.Net;
using Flotilla.Cluster.Registry;
using Marten;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace Flotilla.Gateway.Registry.Auth;

public static class RegistryAuthHosting
{
    /// <summary>Tokens (signed with the cluster's key, see <see cref="RegistryTokenSource"/>), the policy and its options.</summary>
    /// <param name="anonymousPull"><c>auto</c> (allowed when the registry listens only on loopback), <c>true</c> or <c>false</c>.</param>
    /// <param name="realm"><c>--registry-realm</c>: an absolute http(s) URL, or null to derive it from <paramref name="registry"/>.</param>
    public static void AddRegistryAuth(this WebApplicationBuilder builder, IPEndPoint registry, string dataRoot, string anonymousPull,
        string? realm = null)
    {
        if (realm is not null && (!Uri.TryCreate(realm, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https")))
            throw new ArgumentException($"--registry-realm: expected an absolute http or https URL, not '{realm}'");
        var loopbackOnly = IPAddress.IsLoopback(registry.Address);
        var anonymous = anonymousPull.ToLowerInvariant() switch
        {
            "auto" or "" => loopbackOnly,
            "true" or "1" or "yes" => true,
            "false" or "0" or "no" => false,
            _ => throw new ArgumentException($"--registry-anonymous-pull: expected auto, true or false, not '{anonymousPull}'"),
        };
        var options = new RegistryAuthOptions(RegistryAuthOptions.DefaultService, loopbackOnly, anonymous, registry, realm);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(sp => new RegistryTokenSource(new RegistryTokenKeyStore(sp.GetRequiredService<IDocumentStore>()),
            Path.Combine(dataRoot, "registry"), options.Service, TimeSpan.FromMinutes(5)));
        builder.Services.AddSingleton<RegistryAuthPolicy>();
        builder.Services.AddSingleton(new TokenThrottleOptions());
        builder.Services.AddSingleton<TokenThrottle>();
    }
}
