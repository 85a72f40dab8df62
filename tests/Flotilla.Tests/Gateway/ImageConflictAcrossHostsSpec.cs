using Flotilla.Tests.Support;
using Xunit;

namespace Flotilla.Tests.Gateway;

/// <summary>
/// The conflict check is the cluster's, not one host's: through a gateway, the image a container on another node runs
/// (<see cref="GatewayAndNode.Sleeper"/> on node-a) is refused by tag and by id, and <c>image prune -a</c> keeps it.
/// </summary>
public class ImageConflictAcrossHostsSpec(GatewayAndNode cluster) : IClassFixture<GatewayAndNode>
{
    [Fact]
    public async Task An_image_a_container_on_another_node_runs_is_refused_through_the_gateway()
    {
        var imageId = (await cluster.GatewayOk("image", "inspect", "-f", "{{.Id}}", GatewayAndNode.Image)).Trim();
        var container = (await cluster.GatewayOk("inspect", "-f", "{{.Id}} {{.State.Status}}", GatewayAndNode.Sleeper)).Trim().Split(' ');
        Assert.Equal("running", container[1]);

        var byTag = await cluster.OnGatewayAsync("rmi", GatewayAndNode.Image);
        Assert.True(byTag.ExitCode == 1, byTag.ToString());
        Assert.Contains($"conflict: unable to remove repository reference \"{GatewayAndNode.Image}\" (must force) - container {container[0][..12]} is using its referenced image {imageId[7..19]}", byTag.Stderr);
        var byId = await cluster.OnGatewayAsync("rmi", "-f", imageId[7..19]);
        Assert.True(byId.ExitCode == 1, byId.ToString());
        Assert.Contains($"conflict: unable to delete {imageId[7..19]} (cannot be forced) - image is being used by running container {container[0][..12]}", byId.Stderr);
        Assert.DoesNotContain(imageId, await cluster.GatewayOk("image", "prune", "-a", "-f"));

        Assert.Equal(imageId, (await cluster.NodeOk("image", "inspect", "-f", "{{.Id}}", GatewayAndNode.Image)).Trim());
        Assert.Equal("ok", (await cluster.GatewayOk("exec", GatewayAndNode.Sleeper, "echo", "ok")).Trim());
    }
}
