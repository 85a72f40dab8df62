using System.Globalization;

namespace Flotilla.NodeRuntime.Oci;

/// <summary>The numeric identity a container process runs as.</summary>
public sealed record ResolvedUser(int Uid, int Gid, IReadOnlyList<int> AdditionalGids, string Home);

/// <summary>A user or group that the container image does not know.</summary>
public sealed class UnknownUserException(string message) : Exception(message);

/// <summary>
/// Resolves Docker's <c>--user</c> forms ("", "uid", "uid:gid", "name", "name:group", "uid:group", …) against the
/// rootfs's /etc/passwd and /etc/group, with the semantics and error messages of moby/sys/user
/// <c>GetExecUser</c>. The files are looked up with <see cref="RootfsPaths.SecureJoin"/>, so symlinks never
/// lead outside the rootfs.
/// </summary>
public static class UserResolver
{
    private const string NoPasswdEntries = "no matching entries in passwd file";
    private const string NoGroupEntries = "no matching entries in group file";

    public static ResolvedUser Resolve(string rootfs, string user)
    {
        var passwd = ReadLines(RootfsPaths.SecureJoin(rootfs, "/etc/passwd"));
        var group = ReadLines(RootfsPaths.SecureJoin(rootfs, "/etc/group"));
        return Resolve(user, passwd, group);
    }

    /// <summary>Resolves against file contents; a null list means the file is absent.</summary>
    public static ResolvedUser Resolve(string user, IEnumerable<string>? passwdLines, IEnumerable<string>? groupLines)
    {
        var colon = user.IndexOf(':');
        var userArg = colon < 0 ? user : user[..colon];
        var groupArg = colon < 0 ? "" : user[(colon + 1)..];
        var uidOk = TryId(userArg, out var uidArg);
        var gidOk = TryId(groupArg, out var gidArg);

        int uid = 0, gid = 0;
        var home = "/";
        var entries = passwdLines is null ? [] : ParsePasswd(passwdLines).ToList();
        var match = entries.FirstOrDefault(p => userArg.Length == 0 ? p.Uid == 0 : uidOk ? p.Uid == uidArg : p.Name == userArg);
        string? matchedName = null;
        if (match is not null)
        {
            matchedName = match.Name;
            (uid, gid, home) = (match.Uid, match.Gid, match.Home);
        }
        else if (userArg.Length > 0)
        {
            if (!uidOk) throw new UnknownUserException($"unable to find user {userArg}: {NoPasswdEntries}");
            uid = uidArg;
        }

        var additional = new List<int>();
        if (groupArg.Length > 0 || matchedName is not null)
        {
            var groups = groupLines is null ? [] : ParseGroup(groupLines).ToList();
            if (groupArg.Length > 0)
            {
                var g = groups.FirstOrDefault(g => gidOk ? g.Gid == gidArg : g.Name == groupArg);
                if (g is not null) gid = g.Gid;
                else if (!gidOk) throw new UnknownUserException($"unable to find group {groupArg}: {NoGroupEntries}");
                else gid = gidArg;
            }
            else
            {
                additional.AddRange(groups.Where(g => g.Members.Contains(matchedName!)).Select(g => g.Gid));
            }
        }
        return new ResolvedUser(uid, gid, additional, home);
    }

    private static bool TryId(string s, out int id) =>
        int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out id) && id >= 0;

    private static IEnumerable<string>? ReadLines(string path) => File.Exists(path) ? File.ReadAllLines(path) : null;

    private sealed record PasswdEntry(string Name, int Uid, int Gid, string Home);
    private sealed record GroupEntry(string Name, int Gid, string[] Members);

    private static IEnumerable<PasswdEntry> ParsePasswd(IEnumerable<string> lines)
    {
        // name:password:uid:gid:gecos:home:shell
        foreach (var raw in lines)
        {
            var line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            var f = line.Split(':');
            if (f.Length < 4 || !TryId(f[2], out var uid) || !TryId(f[3], out var gid)) continue;
            yield return new PasswdEntry(f[0], uid, gid, f.Length > 5 && f[5].Length > 0 ? f[5] : "/");
        }
    }

    private static IEnumerable<GroupEntry> ParseGroup(IEnumerable<string> lines)
    {
        // name:password:gid:member,member
        foreach (var raw in lines)
        {
            var line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            var f = line.Split(':');
            if (f.Length < 3 || !TryId(f[2], out var gid)) continue;
            var members = f.Length > 3 ? f[3].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) : [];
            yield return new GroupEntry(f[0], gid, members);
        }
    }
}
