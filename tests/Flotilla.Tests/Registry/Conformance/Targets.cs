using Xunit;
using Xunit.Abstractions;

// One class per workflow and target, so a test's name says both: e.g.
// Flotilla.Tests.Registry.Conformance.OnDistribution.Push.Chunked_out_of_order_chunk_is_416.
// Each target is one collection: its registry starts once, its checks run one after another (the catalog check
// sees the whole registry), and the two targets run side by side.

namespace Flotilla.Tests.Registry.Conformance
{
    [CollectionDefinition(Name)]
    public sealed class DistributionCollection : ICollectionFixture<DistributionRegistry>
    {
        public const string Name = "registry-conformance-distribution";
    }

    [CollectionDefinition(Name)]
    public sealed class FlotillaCollection : ICollectionFixture<FlotillaRegistry>
    {
        public const string Name = "registry-conformance-flotilla";
    }
}

namespace Flotilla.Tests.Registry.Conformance.OnDistribution
{
    [Collection(DistributionCollection.Name)]
    public sealed class Pull(DistributionRegistry r, ITestOutputHelper o) : PullChecks<DistributionRegistry>(r, o);

    [Collection(DistributionCollection.Name)]
    public sealed class Push(DistributionRegistry r, ITestOutputHelper o) : PushChecks<DistributionRegistry>(r, o);

    [Collection(DistributionCollection.Name)]
    public sealed class ContentDiscovery(DistributionRegistry r, ITestOutputHelper o) : ContentDiscoveryChecks<DistributionRegistry>(r, o);

    [Collection(DistributionCollection.Name)]
    public sealed class ContentManagement(DistributionRegistry r, ITestOutputHelper o) : ContentManagementChecks<DistributionRegistry>(r, o);

    [Collection(DistributionCollection.Name)]
    public sealed class Hardening(DistributionRegistry r, ITestOutputHelper o) : HardeningChecks<DistributionRegistry>(r, o);
}

namespace Flotilla.Tests.Registry.Conformance.OnFlotilla
{
    [Collection(FlotillaCollection.Name)]
    public sealed class Pull(FlotillaRegistry r, ITestOutputHelper o) : PullChecks<FlotillaRegistry>(r, o);

    [Collection(FlotillaCollection.Name)]
    public sealed class Push(FlotillaRegistry r, ITestOutputHelper o) : PushChecks<FlotillaRegistry>(r, o);

    [Collection(FlotillaCollection.Name)]
    public sealed class ContentDiscovery(FlotillaRegistry r, ITestOutputHelper o) : ContentDiscoveryChecks<FlotillaRegistry>(r, o);

    [Collection(FlotillaCollection.Name)]
    public sealed class ContentManagement(FlotillaRegistry r, ITestOutputHelper o) : ContentManagementChecks<FlotillaRegistry>(r, o);

    [Collection(FlotillaCollection.Name)]
    public sealed class Hardening(FlotillaRegistry r, ITestOutputHelper o) : HardeningChecks<FlotillaRegistry>(r, o);
}
