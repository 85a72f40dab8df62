using System.Net.Http.Json;
using System.Text.Json;
using Flotilla.Tests.Gateway;
using Flotilla.Tests.Support;
using Npgsql;
using Xunit;

namespace Flotilla.Tests.Audit;

/// <summary>`audit verify` and `replay` on a live host driven by the real docker CLI.</summary>
public class LedgerApiSpec(RunningFlotilla flotilla) : IClassFixture<RunningFlotilla>
{
    private async Task DockerOk(params string[] args)
    {
        var result = await flotilla.RunDockerAsync(args);
        Assert.True(result.ExitCode == 0, $"docker {string.Join(' ', args)}: {result}");
    }

    [Fact]
    public async Task A_docker_session_verifies_replays_to_the_same_read_models_and_a_hand_edit_is_named()
    {
        Directory.CreateDirectory(flotilla.DataRoot);
        var rootfs = Path.Combine(flotilla.DataRoot, "ledger-rootfs.tar");
        await File.WriteAllBytesAsync(rootfs, BusyboxImage.Rootfs());
        await DockerOk("import", rootfs, "ledger:1");
        await DockerOk("tag", "ledger:1", "ledger:2");
        await DockerOk("create", "--name", "ledger-a", "ledger:1", "true");
        await DockerOk("rename", "ledger-a", "ledger-b");
        await DockerOk("create", "--name", "ledger-c", "ledger:2", "true");
        await DockerOk("rm", "ledger-c");

        var verify = await flotilla.Native.GetFromJsonAsync<JsonElement>("api/audit/verify");
        Assert.Equal(0, verify.GetProperty("problems").GetArrayLength());
        Assert.True(verify.GetProperty("events").GetInt64() >= 6);

        var containers = await Json("containers/json?all=true");
        var images = await Json("images/json");
        var replay = await flotilla.Native.PostAsync("api/replay", null);
        Assert.True(replay.IsSuccessStatusCode, await replay.Content.ReadAsStringAsync());
        Assert.Equal(containers, await Json("containers/json?all=true"));
        Assert.Equal(images, await Json("images/json"));

        await using (var connection = new NpgsqlConnection(flotilla.ConnectionString))
        {
            await connection.OpenAsync();
            await using var edit = new NpgsqlCommand(
                "UPDATE flotilla.mt_events SET data = jsonb_set(data, '{NewName}', '\"forged\"') WHERE type = 'container_renamed'", connection);
            Assert.Equal(1, await edit.ExecuteNonQueryAsync());
        }
        verify = await flotilla.Native.GetFromJsonAsync<JsonElement>("api/audit/verify");
        var problem = Assert.Single(verify.GetProperty("problems").EnumerateArray());
        Assert.Equal("edited", problem.GetProperty("kind").GetString());
        Assert.StartsWith("container-", problem.GetProperty("stream").GetString());
    }

    private async Task<string> Json(string path) => await flotilla.Docker.GetStringAsync(path);
}
