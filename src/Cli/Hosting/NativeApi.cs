using System.Net.Http.Json;
using System.Text.Json;

namespace Flotilla.Cli.Hosting;

/// <summary>The CLI's client of Flotilla's native API; failures become one readable line on stderr.</summary>
/// <param name="timeout">For the whole request; 30 s unless the verb's work takes longer (gc, replay).</param>
public sealed class NativeApi(string address, TimeSpan? timeout = null) : IDisposable
{
    private readonly HttpClient _client = new()
    {
        BaseAddress = new Uri($"http://{Endpoints.Parse(address, "--http")}/"),
        Timeout = timeout ?? TimeSpan.FromSeconds(30),
    };

    public static readonly JsonSerializerOptions Json = JsonSerializerOptions.Web;

    /// <summary>Sends the request; the response when it succeeded, otherwise null after printing why.</summary>
    /// <param name="streamed">Return once the headers are in, for responses read as a stream (follows, exports).</param>
    public async Task<HttpResponseMessage?> SendAsync(HttpMethod method, string path, object? body, CancellationToken cancellationToken,
        bool streamed = false)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is not null) request.Content = JsonContent.Create(body, body.GetType(), options: Json);
        HttpResponseMessage response;
        try
        {
            response = await _client.SendAsync(request,
                streamed ? HttpCompletionOption.ResponseHeadersRead : HttpCompletionOption.ResponseContentRead, cancellationToken);
        }
        catch (HttpRequestException ex)
        {
            Console.Error.WriteLine($"Cannot reach Flotilla at {_client.BaseAddress}: {ex.Message}. Is `flotilla up` running?");
            return null;
        }
        if (response.IsSuccessStatusCode) return response;
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        string message = text;
        try
        {
            using var doc = JsonDocument.Parse(text);
            if (doc.RootElement.TryGetProperty("message", out var m)) message = m.GetString() ?? text;
        }
        catch (JsonException)
        {
        }
        Console.Error.WriteLine($"Error ({(int)response.StatusCode}): {message}");
        response.Dispose();
        return null;
    }

    public void Dispose() => _client.Dispose();
}
