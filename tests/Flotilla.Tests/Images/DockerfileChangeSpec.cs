using System.Text.Json;
using System.Text.Json.Nodes;
using Flotilla.NodeRuntime.Images;
using Xunit;

namespace Flotilla.Tests.Images;

public sealed class DockerfileChangeSpec
{
    private static readonly ContainerConfig Base = new() { Cmd = ["sh"], Env = ["PATH=/bin", "A=old"], WorkingDir = "/srv" };

    [Theory]
    [InlineData("CMD [\"/bin/busybox\",\"echo\",\"hi\"]", "Cmd", "[\"/bin/busybox\",\"echo\",\"hi\"]")]
    [InlineData("CMD echo hi there", "Cmd", "[\"/bin/sh\",\"-c\",\"echo hi there\"]")]
    [InlineData("cmd [\"not json\"", "Cmd", "[\"/bin/sh\",\"-c\",\"[\\\"not json\\\"\"]")]
    [InlineData("ENTRYPOINT [\"/bin/busybox\"]", "Entrypoint", "[\"/bin/busybox\"]")]
    [InlineData("ENTRYPOINT [\"/bin/busybox\"]", "Cmd", "null")]
    [InlineData("CMD [\"x\"]\nENTRYPOINT [\"e\"]", "Cmd", "[\"x\"]")]
    [InlineData("ENTRYPOINT top -b", "Entrypoint", "[\"/bin/sh\",\"-c\",\"top -b\"]")]
    [InlineData("ENV B=1 C=\"two words\" A=new", "Env", "[\"PATH=/bin\",\"B=1\",\"C=two words\",\"A=new\"]")]
    [InlineData("ENV LEGACY value with  spaces", "Env", "[\"PATH=/bin\",\"A=old\",\"LEGACY=value with spaces\"]")]
    [InlineData("ENV ESC=a\\ b", "Env", "[\"PATH=/bin\",\"A=old\",\"ESC=a b\"]")]
    [InlineData("WORKDIR /app", "WorkingDir", "\"/app\"")]
    [InlineData("WORKDIR sub/dir", "WorkingDir", "\"/srv/sub/dir\"")]
    [InlineData("WORKDIR /app\nWORKDIR ../x", "WorkingDir", "\"/x\"")]
    [InlineData("USER 1000:1000", "User", "\"1000:1000\"")]
    [InlineData("EXPOSE 80 53/udp 8000-8001/TCP", "ExposedPorts", "{\"80/tcp\":{},\"53/udp\":{},\"8000/tcp\":{},\"8001/tcp\":{}}")]
    [InlineData("LABEL a=b \"c d\"='e f'", "Labels", "{\"a\":\"b\",\"c d\":\"e f\"}")]
    [InlineData("LABEL legacy some value", "Labels", "{\"legacy\":\"some value\"}")]
    [InlineData("VOLUME [\"/data\", \"/logs\"]", "Volumes", "{\"/data\":{},\"/logs\":{}}")]
    [InlineData("VOLUME /a /b", "Volumes", "{\"/a\":{},\"/b\":{}}")]
    [InlineData("STOPSIGNAL SIGKILL", "StopSignal", "\"SIGKILL\"")]
    [InlineData("STOPSIGNAL 9", "StopSignal", "\"9\"")]
    [InlineData("STOPSIGNAL SIGRTMIN+3", "StopSignal", "\"SIGRTMIN+3\"")]
    [InlineData("ONBUILD RUN echo   hi", "OnBuild", "[\"RUN echo   hi\"]")]
    [InlineData("# a comment\n\nUSER nobody", "User", "\"nobody\"")]
    [InlineData("ENV X=1 \\\n  Y=2", "Env", "[\"PATH=/bin\",\"A=old\",\"X=1\",\"Y=2\"]")]
    public void Applies(string change, string field, string expectedJson)
    {
        var config = DockerfileChange.Apply(Base, [change]);
        var relaxed = new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        var node = JsonNode.Parse(JsonSerializer.Serialize(config, relaxed))!;
        Assert.Equal(expectedJson, node[field]?.ToJsonString(relaxed) ?? "null");
    }

    [Fact]
    public void Applies_several_changes_in_order_and_keeps_the_rest()
    {
        var config = DockerfileChange.Apply(Base, ["ENV A=1", "ENV A=2", "EXPOSE 80", "EXPOSE 443"]);
        Assert.Equal(["PATH=/bin", "A=2"], config.Env!);
        Assert.Equal(["80/tcp", "443/tcp"], config.ExposedPorts!.Keys);
        Assert.Equal(["sh"], config.Cmd!);
        Assert.Equal("/srv", config.WorkingDir);
    }

    [Theory]
    [InlineData("RUN echo hi", "run is not a valid change command")]
    [InlineData("FROM busybox", "from is not a valid change command")]
    [InlineData("COPY a b", "copy is not a valid change command")]
    [InlineData("SHELL [\"/bin/bash\"]", "shell is not a valid change command")]
    [InlineData("FOO bar", "dockerfile parse error line 1: unknown instruction: FOO")]
    [InlineData("EXPOSE abc", "invalid containerPort: abc")]
    [InlineData("EXPOSE 70000", "invalid containerPort: 70000")]
    [InlineData("EXPOSE 80/xyz", "invalid proto: xyz")]
    [InlineData("EXPOSE 90-80", "invalid range specified for containerPort: 90-80")]
    [InlineData("STOPSIGNAL NOPE", "Invalid signal: NOPE")]
    [InlineData("ENV", "ENV requires at least one argument")]
    [InlineData("CMD", "CMD requires at least one argument")]
    [InlineData("ENV ONLYKEY", "ENV must have two arguments")]
    [InlineData("ENV A=1 B", "Syntax error - can't find = in \"B\"")]
    [InlineData("LABEL a=\"unterminated", "unexpected end of statement while looking for matching \"")]
    [InlineData("ONBUILD ONBUILD RUN x", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")]
    [InlineData("ONBUILD FROM x", "FROM isn't allowed as an ONBUILD trigger")]
    [InlineData("USER a b", "USER requires exactly one argument")]
    public void Refuses(string change, string message)
    {
        var ex = Assert.Throws<FormatException>(() => DockerfileChange.Apply(Base, [change]));
        Assert.Equal(message, ex.Message.StartsWith(message, StringComparison.Ordinal) ? message : ex.Message);
    }
}
