using System.Text.RegularExpressions;

namespace Flotilla.Contracts.Registry;

/// <summary>
/// A registry user's repository pattern. One rule: <c>*</c> matches any run of characters, <c>/</c> included; every
/// other character matches itself; the whole name must match. So <c>*</c> is every repository, <c>team/*</c> is
/// everything under <c>team/</c> at any depth (<c>team/app</c>, <c>team/a/b</c>, not <c>team</c> nor <c>teamx/app</c>),
/// <c>*/app</c> is any <c>…/app</c>, and <c>team/app</c> is that repository only.
/// </summary>
public static partial class RepositoryPattern
{
    /// <summary>Every repository: the default, and what users from before per-repository rights hold.</summary>
    public const string Every = "*";

    public const int MaxLength = 255;

    // A repository name's characters plus '*'; no leading or trailing '/'.
    [GeneratedRegex("^[a-z0-9._*-]+(/[a-z0-9._*-]+)*$")]
    private static partial Regex Shape();

    public static bool IsValid(string pattern) => pattern.Length <= MaxLength && Shape().IsMatch(pattern);

    /// <summary>Does <paramref name="pattern"/> match all of <paramref name="repository"/>? Linear-ish, no regex built per call.</summary>
    public static bool Matches(string pattern, string repository)
    {
        int p = 0, r = 0, star = -1, resume = 0;
        while (r < repository.Length)
        {
            if (p < pattern.Length && pattern[p] == '*')
            {
                // Remember the star; first try it matching nothing.
                star = p++;
                resume = r;
            }
            else if (p < pattern.Length && pattern[p] == repository[r])
            {
                p++;
                r++;
            }
            else if (star >= 0)
            {
                // Let the last star swallow one more character and try again from there.
                p = star + 1;
                r = ++resume;
            }
            else return false;
        }
        while (p < pattern.Length && pattern[p] == '*') p++;
        return p == pattern.Length;
    }

    /// <summary>Does any of <paramref name="patterns"/> (null = every repository) match <paramref name="repository"/>?</summary>
    public static bool AnyMatches(IReadOnlyList<string>? patterns, string repository) =>
        patterns is null || patterns.Any(p => Matches(p, repository));

    /// <summary>Do <paramref name="patterns"/> (null = every repository) cover every repository?</summary>
    public static bool CoversEvery(IReadOnlyList<string>? patterns) => patterns is null || patterns.Any(p => p.All(c => c == '*'));
}
