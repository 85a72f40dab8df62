using System.Text.Json.Nodes;
using Flotilla.NodeRuntime.Oci;
using Xunit;

namespace Flotilla.Tests.Oci;

public sealed class SeccompProfileConverterSpec
{
    private const string Profile = """
    {
      "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "defaultErrno": "ENOSYS",
      "archMap": [
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
      ],
      "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": [], "comment": "", "includes": {}, "excludes": {}},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
        {"names": ["arm_fadvise64_64"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm", "arm64"]}},
        {"names": ["kcmp"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_PTRACE"]}},
        {"names": ["kcmp"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "errno": "EPERM", "excludes": {"caps": ["CAP_SYS_PTRACE"]}},
        {"names": ["newcall"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "5.8"}},
        {"names": ["oldcall"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "5.8"}},
        {"names": ["notonarm"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["arm64"]}},
        {"names": ["both"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]}}
      ]
    }
    """;

    private static readonly string[] DefaultCaps = [.. Capabilities.Default];

    private static List<(string Name, string Action)> Rules(JsonObject seccomp) =>
        seccomp["syscalls"]!.AsArray().SelectMany(r => r!["names"]!.AsArray().Select(n => ((string)n!, (string)r["action"]!))).ToList();

    public static TheoryData<string, string[], string, string[], string[]> Cases => new()
    {
        // arch, caps, kernel, present (name:action), absent
        { "amd64", DefaultCaps, "6.18", ["read:SCMP_ACT_ALLOW", "arch_prctl:SCMP_ACT_ALLOW", "kcmp:SCMP_ACT_ERRNO", "newcall:SCMP_ACT_ALLOW", "notonarm:SCMP_ACT_ALLOW"],
            ["arm_fadvise64_64", "kcmp:SCMP_ACT_ALLOW", "oldcall", "both"] },
        { "amd64", [.. DefaultCaps, "CAP_SYS_PTRACE"], "6.18", ["kcmp:SCMP_ACT_ALLOW"], ["kcmp:SCMP_ACT_ERRNO", "both"] },
        { "amd64", [.. DefaultCaps, "CAP_SYS_PTRACE", "CAP_SYS_ADMIN"], "6.18", ["both:SCMP_ACT_ALLOW"], [] },
        { "amd64", DefaultCaps, "4.19", ["oldcall:SCMP_ACT_ALLOW"], ["newcall"] },
        { "amd64", DefaultCaps, "5.8", ["newcall:SCMP_ACT_ALLOW"], ["oldcall"] },
        { "arm64", DefaultCaps, "6.1", ["arm_fadvise64_64:SCMP_ACT_ALLOW"], ["arch_prctl", "notonarm"] },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Rules_apply_by_arch_caps_and_kernel(string arch, string[] caps, string kernel, string[] present, string[] absent)
    {
        var rules = Rules(SeccompProfileConverter.Convert(Profile, caps, arch, Version.Parse(kernel)));
        foreach (var p in present)
        {
            var (name, action) = (p.Split(':')[0], p.Split(':')[1]);
            Assert.Contains((name, action), rules);
        }
        foreach (var a in absent)
        {
            var parts = a.Split(':');
            Assert.DoesNotContain(rules, r => r.Name == parts[0] && (parts.Length == 1 || r.Action == parts[1]));
        }
    }

    [Theory]
    [InlineData("amd64", new[] { "SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32" })]
    [InlineData("arm64", new[] { "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM" })]
    public void Architectures_are_the_native_one_and_its_sub_architectures(string arch, string[] expected)
    {
        var seccomp = SeccompProfileConverter.Convert(Profile, DefaultCaps, arch, new Version(6, 1));
        Assert.Equal(expected, seccomp["architectures"]!.AsArray().Select(a => (string)a!).ToArray());
    }

    [Fact]
    public void Output_is_the_oci_shape_with_errno_and_args()
    {
        var seccomp = SeccompProfileConverter.Convert(Profile, DefaultCaps, "amd64", new Version(6, 18));
        Assert.Equal("SCMP_ACT_ERRNO", (string)seccomp["defaultAction"]!);
        Assert.Equal(38u, (uint)seccomp["defaultErrnoRet"]!);
        Assert.Null(seccomp["archMap"]);
        var kcmp = seccomp["syscalls"]!.AsArray().Single(r => (string)r!["names"]![0]! == "kcmp")!.AsObject();
        Assert.Equal(1u, (uint)kcmp["errnoRet"]!);
        Assert.Equal(["names", "action", "errnoRet"], kcmp.Select(p => p.Key).ToArray());
        var personality = seccomp["syscalls"]!.AsArray().Single(r => (string)r!["names"]![0]! == "personality")!;
        Assert.Equal("""[{"index":0,"value":8,"valueTwo":0,"op":"SCMP_CMP_EQ"}]""", personality["args"]!.ToJsonString());
        Assert.Null(seccomp["syscalls"]![0]!["args"]); // empty args are left out
    }

    [Fact]
    public void The_host_profile_converts_and_denies_kcmp_to_docker_caps()
    {
        if (!File.Exists(SeccompProfileConverter.DefaultProfilePath)) return;
        var seccomp = SeccompProfileConverter.Convert(File.ReadAllText(SeccompProfileConverter.DefaultProfilePath), DefaultCaps, "amd64", new Version(6, 18));
        var rules = Rules(seccomp);
        Assert.Contains(("kcmp", "SCMP_ACT_ERRNO"), rules);
        Assert.DoesNotContain(("kcmp", "SCMP_ACT_ALLOW"), rules);
        Assert.Contains(("chroot", "SCMP_ACT_ALLOW"), rules); // CAP_SYS_CHROOT is a default cap
        Assert.Contains(("bpf", "SCMP_ACT_ERRNO"), rules);
    }

    [Theory]
    [InlineData("6.18.0-1-amd64", 6, 18)]
    [InlineData("5.10.0", 5, 10)]
    [InlineData("4.8", 4, 8)]
    [InlineData("6.1.0-rc3+", 6, 1)]
    public void Kernel_versions_parse(string release, int major, int minor) =>
        Assert.Equal(new Version(major, minor), SeccompProfileConverter.ParseKernel(release));
}
