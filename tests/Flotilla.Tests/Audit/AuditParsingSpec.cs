using System.Text.Json;
using Flotilla.Cluster.Audit;
using Flotilla.Gateway.Native;
using Xunit;

namespace Flotilla.Tests.Audit;

public class AuditParsingSpec
{
    private static readonly DateTimeOffset Now = new(2026, 11, 27, 12, 0, 0, TimeSpan.Zero);

    [Theory]
    [InlineData("10m", "2026-11-27T11:50:00Z")]
    [InlineData("1h30m", "2026-11-27T10:30:00Z")]
    [InlineData("1.5h", "2026-11-27T10:30:00Z")]
    [InlineData("500ms", "2026-11-27T11:59:59.5Z")]
    [InlineData("0s", "2026-11-27T12:00:00Z")]
    [InlineData("0", "1970-01-01T00:00:00Z")]
    [InlineData("1700000000", "2023-11-14T22:13:20Z")]
    [InlineData("1700000000.25", "2023-11-14T22:13:20.25Z")]
    [InlineData("1700000000.000000001", "2023-11-14T22:13:20Z")]
    [InlineData("2026-11-27T10:00:00Z", "2026-11-27T10:00:00Z")]
    [InlineData("2026-11-27T10:00:00.5+01:00", "2026-11-27T09:00:00.5Z")]
    public void Time_bounds_parse_as_docker_takes_them(string text, string expected) =>
        Assert.Equal(DateTimeOffset.Parse(expected), AuditTime.Parse(text, Now));

    [Theory]
    [InlineData("")]
    [InlineData("yesterday")]
    [InlineData("10x")]
    [InlineData("1.2.3")]
    [InlineData("m")]
    [InlineData("99999999999999999999")]
    public void Bad_time_bounds_are_refused(string text) =>
        Assert.False(AuditTime.TryParse(text, Now, out _));

    [Theory]
    [InlineData("plain", "plain")]
    [InlineData("a,b", "\"a,b\"")]
    [InlineData("say \"hi\"", "\"say \"\"hi\"\"\"")]
    [InlineData("two\nlines", "\"two\nlines\"")]
    [InlineData(null, "")]
    public void Csv_fields_are_quoted_when_they_must_be(string? value, string expected) =>
        Assert.Equal(expected, AuditCsv.Field(value));

    [Theory]
    [InlineData("ContainerStarted", "container_started")]
    [InlineData("container_started", "container_started")]
    [InlineData("imageremoved", "imageremoved")]
    public void Type_names_accept_both_spellings(string text, string expected) =>
        Assert.Equal(expected, AuditQuery.TypeName(text));

    [Theory]
    [InlineData("container-abc", "container", "abc")]
    [InlineData("image-sha256:12", "image", "sha256:12")]
    [InlineData("registry-user-alice", "registry-user", "alice")]
    [InlineData("registry-access", "registry-access", "")]
    public void Streams_name_their_object(string stream, string kind, string id) =>
        Assert.Equal(new AuditObject(kind, id), AuditObject.FromStream(stream));

    [Fact]
    public void Password_hashes_never_leave_the_store()
    {
        var data = AuditQuery.Redact("""{"Name":"alice","PasswordHash":"pbkdf2$abc","Nested":[{"PasswordHash":"x"}],"Rights":["pull"]}""");
        Assert.Equal("alice", data.GetProperty("Name").GetString());
        Assert.Equal(AuditQuery.Redacted, data.GetProperty("PasswordHash").GetString());
        Assert.Equal(AuditQuery.Redacted, data.GetProperty("Nested")[0].GetProperty("PasswordHash").GetString());
        Assert.DoesNotContain("pbkdf2", data.GetRawText());
    }

    [Fact]
    public void Environment_values_are_redacted_names_kept_also_inside_embedded_docker_json()
    {
        var config = """{"Env":["PATH=/bin","DB_PASSWORD=hunter2=x","UNSET"],"Cmd":["env"]}""";
        var body = JsonSerializer.Serialize(new { Definition = new { Env = new[] { "DB_PASSWORD=hunter2=x" }, ConfigJson = config, HostConfigJson = "{}" } });
        var data = AuditQuery.Redact(body);
        var text = data.GetRawText();
        Assert.DoesNotContain("hunter2", text);
        Assert.Equal("DB_PASSWORD=<redacted>", data.GetProperty("Definition").GetProperty("Env")[0].GetString());
        var inner = JsonDocument.Parse(data.GetProperty("Definition").GetProperty("ConfigJson").GetString()!).RootElement;
        Assert.Equal(["PATH=<redacted>", "DB_PASSWORD=<redacted>", "UNSET"], inner.GetProperty("Env").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal("env", inner.GetProperty("Cmd")[0].GetString());
    }
}
