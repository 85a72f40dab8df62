using Flotilla.NodeRuntime.Images;

namespace Flotilla.NodeRuntime.Distribution;

/// <summary>A node's registry client side: pulls into and pushes from its <see cref="NodeImageStore"/>.</summary>
public sealed class ImageDistribution : IDisposable
{
    public ImageDistribution(NodeImageStore store, RegistryClientOptions? options = null)
    {
        Store = store;
        Client = new RegistryClient(options);
        var sources = new BlobSources();
        Puller = new ImagePuller(store, Client, sources);
        Pusher = new ImagePusher(store, Client, sources);
    }

    public NodeImageStore Store { get; }
    public RegistryClient Client { get; }
    public ImagePuller Puller { get; }
    public ImagePusher Pusher { get; }

    public void Dispose() => Client.Dispose();
}
