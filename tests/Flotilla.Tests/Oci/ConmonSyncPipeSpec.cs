using Flotilla.NodeRuntime.Oci;
using Xunit;

namespace Flotilla.Tests.Oci;

/// <summary>
/// conmon's sync pipe carries one JSON message per event (the pid, then an exec's exit). A reader must take one message
/// and leave the next one in the pipe: a fast exec's exit is often written before its pid has been read, and reading
/// both at once lost the exit code (-1 instead of 3, seen under load).
/// </summary>
public sealed class ConmonSyncPipeSpec
{
    [Theory]
    [InlineData("{\"data\": 4242}\n{\"data\": 3}\n", 4242, null, 3, null)]
    [InlineData("{\"data\": 4242}{\"data\": 3}", 4242, null, 3, null)]
    [InlineData("{\"data\": -1, \"message\": \"exec failed: {oops}\"}\n{\"data\": 7}\n", -1, "exec failed: {oops}", 7, null)]
    [InlineData("{\"data\": 12}\n", 12, null, -1, null)]
    public void Each_read_takes_one_message(string written, int first, string? firstMessage, int second, string? secondMessage)
    {
        var (read, write) = Native.Pipe();
        try
        {
            Native.WriteAll(write, System.Text.Encoding.UTF8.GetBytes(written));
            Native.Close(write);
            write = -1;
            Assert.Equal((first, firstMessage), ConmonMonitor.ReadSyncMessage(read));
            Assert.Equal((second, secondMessage), ConmonMonitor.ReadSyncMessage(read));
        }
        finally
        {
            Native.Close(read);
            if (write >= 0) Native.Close(write);
        }
    }
}
