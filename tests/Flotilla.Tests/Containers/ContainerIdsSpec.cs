using Flotilla.Contracts.Containers;
using Flotilla.NodeRuntime.Containers;
using Flotilla.NodeRuntime.Images;
using Flotilla.NodeRuntime.Oci;
using Xunit;

namespace Flotilla.Tests.Containers;

/// <summary>Container ids become paths and runc arguments: only Docker's form (64 lowercase hex) passes (issue 13, item 2).</summary>
public class ContainerIdsSpec
{
    private static readonly string Good = new string('a', 63) + "0";

    public static TheoryData<string> Bad => new()
    {
        "../x",
        "../../../../etc",
        new string('a', 62) + "/.",
        new string('A', 64),
        "Ab" + new string('0', 62),
        new string('a', 63),
        new string('a', 65),
        new string('a', 63) + "\0",
        new string('a', 32) + "\0" + new string('a', 31),
        new string('g', 64),
        "",
        "-" + new string('a', 63),
        new string('a', 63) + " ",
    };

    [Theory]
    [MemberData(nameof(Bad))]
    public void An_id_that_is_not_64_lowercase_hex_is_refused_everywhere_it_would_become_a_path(string id)
    {
        Assert.False(ContainerIds.IsValid(id));
        var e = Assert.Throws<InvalidContainerIdException>(() => ContainerIds.Validate(id));
        Assert.DoesNotContain('\0', e.Message);

        var root = Path.Combine(Path.GetTempPath(), "flt-ids-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            var monitor = new ConmonMonitor(new ConmonOptions { DataRoot = root }, new RuncDriver("/usr/sbin/runc", Path.Combine(root, "oci")));
            var runtime = new NodeContainerRuntime(root, new NodeImageStore(root), monitor);
            Assert.Throws<InvalidContainerIdException>(() => runtime.DirOf(id));
            Assert.Throws<InvalidContainerIdException>(() => runtime.RootfsOf(id));
            Assert.Throws<InvalidContainerIdException>(() => monitor.PathsFor(id));
            Assert.Throws<InvalidContainerIdException>(() => runtime.LogFiles(id));
            Assert.Throws<InvalidContainerIdException>(() => new OciBundleBuilder().CgroupsPath(id));
            Assert.ThrowsAsync<InvalidContainerIdException>(() => monitor.Runtime.KillAsync(id)).GetAwaiter().GetResult();
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void Dockers_form_passes()
    {
        Assert.True(ContainerIds.IsValid(Good));
        Assert.Equal(Good, ContainerIds.Validate(Good));
        Assert.True(ContainerIds.IsValid(Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32))));
    }
}
