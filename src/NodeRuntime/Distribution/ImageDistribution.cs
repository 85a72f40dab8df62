using Flotilla.NodeRuntime.Images;

namespace Flotilla.NodeRuntime.Distribution;

/// <summary>A node's registry client side: pulls into and pushes from its <see cref="NodeImageStore"/>.</summary>
public sealed class ImageDistribution : IDisposable
{
    public ImageDistribution(NodeImageStore store, RegistryClientOptions? options = null)
    {
        Store = store;
        Client = new RegistryClient(options);
        Metadata = new DistributionMetadataStore(Path.Combine(store.DataRoot, "distribution"));
        Puller = new ImagePuller(store, Client, Metadata);
        Pusher = new ImagePusher(store, Client, Metadata);
    }

    public NodeImageStore Store { get; }
    public RegistryClient Client { get; }
    /// <summary>Which registry blobs hold which layers, under <c>&lt;data&gt;/distribution</c>.</summary>
    public DistributionMetadataStore Metadata { get; }
    public ImagePuller Puller { get; }
    public ImagePusher Pusher { get; }

    public void Dispose() => Client.Dispose();
}
