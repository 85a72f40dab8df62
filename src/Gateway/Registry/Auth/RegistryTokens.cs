using System.Security.Cryptography;
using System.Text.Json;
using Flotilla.Cluster.Registry;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Flotilla.Gateway.Registry.Auth;

/// <summary>
/// Issues and checks the registry's bearer tokens: JWTs (HS256) with the distribution token spec's claims
/// (<c>iss, sub, aud, exp, nbf, iat, jti, access</c>). The registry is its own token server, so one symmetric key
/// serves both sides; it is the cluster's (<see cref="Cluster.Registry.RegistryTokenKeyStore"/>), so every gateway
/// accepts every other's tokens.
/// </summary>
public sealed class RegistryTokens
{
    public const string Issuer = "flotilla";
    private readonly SymmetricSecurityKey _key;
    private readonly JsonWebTokenHandler _handler = new() { SetDefaultTimesOnTokenCreation = false };
    private readonly TokenValidationParameters _validation;

    public RegistryTokens(byte[] signingKey, string service, TimeSpan lifetime)
        : this(new RegistryKeyRing([new RegistrySigningKey(RegistryTokenKey.KidOf(signingKey), signingKey, DateTimeOffset.UtcNow)]), service, lifetime)
    {
    }

    /// <summary>Signs with the ring's newest key (its id in the <c>kid</c> header); accepts tokens of any key in the ring.</summary>
    public RegistryTokens(RegistryKeyRing ring, string service, TimeSpan lifetime)
    {
        if (ring.Keys.Any(k => k.Key.Length < 32)) throw new ArgumentException("a signing key must have at least 256 bits", nameof(ring));
        var keys = ring.Keys.Select(k => new SymmetricSecurityKey(k.Key) { KeyId = k.Kid }).ToList();
        _key = keys[0];
        Ring = ring;
        Service = service;
        Lifetime = lifetime;
        _validation = new TokenValidationParameters
        {
            ValidIssuer = Issuer,
            ValidAudience = service,
            // A token without kid (issued before rotation existed) is tried against every key in the ring.
            IssuerSigningKeys = keys,
            TryAllIssuerSigningKeys = true,
            ValidAlgorithms = [SecurityAlgorithms.HmacSha256],
            ClockSkew = TimeSpan.FromSeconds(30),
        };
    }

    public RegistryKeyRing Ring { get; }

    public string Service { get; }
    public TimeSpan Lifetime { get; }

    public string Issue(string subject, IReadOnlyList<RegistryScope> access, DateTimeOffset now)
    {
        var descriptor = new SecurityTokenDescriptor
        {
            Issuer = Issuer,
            Audience = Service,
            IssuedAt = now.UtcDateTime,
            NotBefore = now.UtcDateTime,
            Expires = (now + Lifetime).UtcDateTime,
            SigningCredentials = new SigningCredentials(_key, SecurityAlgorithms.HmacSha256),
            Claims = new Dictionary<string, object>
            {
                ["sub"] = subject,
                ["jti"] = Guid.NewGuid().ToString("N"),
                ["access"] = access.Select(a => new Dictionary<string, object>
                {
                    ["type"] = a.Type,
                    ["name"] = a.Name,
                    ["actions"] = a.Actions.ToArray(),
                }).ToArray(),
            },
        };
        return _handler.CreateToken(descriptor);
    }

    /// <summary>The token's subject and granted access, or null when it is not a valid, current token of ours.</summary>
    public async Task<GrantedAccess?> ValidateAsync(string token)
    {
        var result = await _handler.ValidateTokenAsync(token, _validation);
        if (!result.IsValid || result.SecurityToken is not JsonWebToken jwt) return null;
        var payload = JsonDocument.Parse(Base64UrlEncoder.DecodeBytes(jwt.EncodedPayload)).RootElement;
        var subject = payload.TryGetProperty("sub", out var sub) && sub.ValueKind == JsonValueKind.String ? sub.GetString()! : "";
        var scopes = new List<RegistryScope>();
        if (payload.TryGetProperty("access", out var access) && access.ValueKind == JsonValueKind.Array)
        {
            foreach (var entry in access.EnumerateArray())
            {
                if (entry.ValueKind != JsonValueKind.Object) continue;
                var type = entry.TryGetProperty("type", out var t) ? t.GetString() : null;
                var name = entry.TryGetProperty("name", out var n) ? n.GetString() : null;
                if (type is null || name is null || !entry.TryGetProperty("actions", out var actions) || actions.ValueKind != JsonValueKind.Array)
                    continue;
                scopes.Add(new RegistryScope(type, name, actions.EnumerateArray().Select(a => a.GetString() ?? "").ToList()));
            }
        }
        return new GrantedAccess(subject, scopes);
    }
}

/// <summary>Who a token speaks for (empty subject = anonymous) and what it allows.</summary>
public sealed record GrantedAccess(string Subject, IReadOnlyList<RegistryScope> Scopes)
{
    public bool Allows(RegistryScope needed) =>
        needed.Actions.All(action => Scopes.Any(s => s.Type == needed.Type && s.Name == needed.Name &&
            (s.Actions.Contains(action) || s.Actions.Contains("*"))));
}
