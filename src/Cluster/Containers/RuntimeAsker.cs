using Akka.Actor;

namespace Flotilla.Cluster.Containers;

/// <summary>
/// Asks a node's runtime actor on behalf of a container entity, as a short-lived child of the entity: the runtime
/// then sees the request come from under the entity's own path (<c>/system/sharding/container/…/&lt;id&gt;/$a</c>),
/// which it checks (<c>RuntimeCallerPolicy</c>). Akka's <c>Ask</c> would send from <c>/temp</c>, which any code
/// can use; a reply sent to the entity itself would wait behind the entity's own await.
/// </summary>
internal sealed class RuntimeAsker : UntypedActor
{
    private readonly ICanTell _runtime;
    private readonly object _request;
    private readonly TimeSpan _timeout;
    private readonly TaskCompletionSource<object> _reply;

    public RuntimeAsker(ICanTell runtime, object request, TimeSpan timeout, TaskCompletionSource<object> reply)
    {
        _runtime = runtime;
        _request = request;
        _timeout = timeout;
        _reply = reply;
    }

    /// <summary>The runtime's reply; <see cref="AskTimeoutException"/> when none comes within <paramref name="timeout"/>.</summary>
    public static Task<object> AskAsync(IActorContext context, ICanTell runtime, object request, TimeSpan timeout)
    {
        var reply = new TaskCompletionSource<object>(TaskCreationOptions.RunContinuationsAsynchronously);
        context.ActorOf(Props.Create(() => new RuntimeAsker(runtime, request, timeout, reply)));
        return WithDeadline(reply.Task, timeout, request);
    }

    /// <summary>A child that could not even start never answers: the caller still gets its timeout.</summary>
    private static async Task<object> WithDeadline(Task<object> reply, TimeSpan timeout, object request)
    {
        try
        {
            return await reply.WaitAsync(timeout + TimeSpan.FromSeconds(1));
        }
        catch (TimeoutException)
        {
            throw new AskTimeoutException($"Timeout after {timeout} waiting for the runtime to answer {request.GetType().Name}");
        }
    }

    protected override void PreStart()
    {
        Context.SetReceiveTimeout(_timeout);
        _runtime.Tell(_request, Self);
    }

    protected override void OnReceive(object message)
    {
        if (message is ReceiveTimeout)
            _reply.TrySetException(new AskTimeoutException($"Timeout after {_timeout} waiting for the runtime to answer {_request.GetType().Name}"));
        else
            _reply.TrySetResult(message);
        Context.Stop(Self);
    }

    protected override void PostStop() =>
        _reply.TrySetException(new AskTimeoutException($"the entity stopped before the runtime answered {_request.GetType().Name}"));
}
