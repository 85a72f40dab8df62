using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace Flotilla.NodeRuntime.Oci;

/// <summary>
/// Waits for processes (the containers' conmons) to end with one pidfd per waited process in one epoll set, read by
/// one background thread for the whole engine: no inotify instance and no thread per container.
/// <para>
/// Why pidfds and not one inotify watcher over the exit directories: inotify instances are a budget of the user on
/// the whole machine (<c>fs.inotify.max_user_instances</c>, 128 by default), shared with every other process of
/// root, so even a single one can fail to be had (and one watch per container directory would still be needed, the
/// exit files live in each container's own directory). A pidfd costs a descriptor of this process (RLIMIT_NOFILE,
/// which .NET raises to the hard limit). And it is the event that matters: conmon writes the exit file as the last
/// thing before it exits, and a conmon that dies without writing one is seen at once rather than by polling.
/// </para>
/// A pidfd refers to one process for good (no pid reuse); callers check after <see cref="TryWatch"/> that it is the
/// process they meant.
/// </summary>
internal sealed partial class ProcessExitWatch
{
    private const int EPOLL_CLOEXEC = 0x80000;
    private const int EPOLL_CTL_ADD = 1;
    private const int EPOLL_CTL_DEL = 2;
    private const uint EPOLLIN = 0x1;
    private const int EINTR = 4;
    private const int ESRCH = 3;
    private const long SYS_pidfd_open = 434; // the same number on every architecture (added after the syscall tables were unified)
    private const int MaxEvents = 64;

    // struct epoll_event is packed on x86-64 (12 bytes: events, then data at offset 4); elsewhere 16 bytes, data at 8.
    private static readonly bool Packed = RuntimeInformation.ProcessArchitecture == Architecture.X64;
    private static readonly int EventSize = Packed ? 12 : 16;
    private static readonly int DataOffset = Packed ? 4 : 8;

    private readonly ConcurrentDictionary<ulong, Waiter> _waiters = new();
    private readonly Lock _startLock = new();
    private long _nextKey;
    private int _epoll = -1;
    private volatile string? _broken;

    private ProcessExitWatch()
    {
    }

    /// <summary>A watch that cannot watch (as on a kernel without pidfds): its callers poll. For tests.</summary>
    internal ProcessExitWatch(string broken) => _broken = broken;

    /// <summary>The engine's one watch (one thread, started on first use).</summary>
    public static ProcessExitWatch Shared { get; } = new();

    /// <summary>Why watching does not work here (null while it does): then callers poll.</summary>
    public string? Broken => _broken;

    /// <summary>Processes being waited for (one descriptor each).</summary>
    public int Count => _waiters.Count;

    /// <summary>
    /// Starts waiting for <paramref name="pid"/> to end. False when it cannot be watched (no pidfd support, out of
    /// descriptors, the watch thread failed): the caller does not know, and polls. A process already gone gives a
    /// waiter that has ended.
    /// </summary>
    public bool TryWatch(int pid, out Waiter waiter)
    {
        waiter = null!;
        if (!EnsureStarted()) return false;
        var fd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (fd < 0)
        {
            if (Marshal.GetLastPInvokeError() != ESRCH) return false;
            waiter = new Waiter(this, 0, -1);
            waiter.Exited.TrySetResult();
            return true;
        }
        var key = (ulong)Interlocked.Increment(ref _nextKey);
        var w = new Waiter(this, key, fd);
        _waiters[key] = w;
        Span<byte> ev = stackalloc byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(ev, EPOLLIN);
        BinaryPrimitives.WriteUInt64LittleEndian(ev[DataOffset..], key);
        if (epoll_ctl(_epoll, EPOLL_CTL_ADD, fd, ev) != 0)
        {
            if (_waiters.TryRemove(key, out _)) Native.close(fd);
            return false;
        }
        waiter = w;
        return true;
    }

    private bool EnsureStarted()
    {
        if (_broken is not null) return false;
        if (Volatile.Read(ref _epoll) >= 0) return true;
        lock (_startLock)
        {
            if (_epoll >= 0) return true;
            var epoll = epoll_create1(EPOLL_CLOEXEC);
            if (epoll < 0)
            {
                _broken = $"epoll_create1: errno {Marshal.GetLastPInvokeError()}";
                return false;
            }
            // Probe pidfd_open once on ourselves (ENOSYS before Linux 5.3).
            var probe = (int)syscall(SYS_pidfd_open, Environment.ProcessId, 0);
            if (probe < 0)
            {
                _broken = $"pidfd_open: errno {Marshal.GetLastPInvokeError()}";
                Native.close(epoll);
                return false;
            }
            Native.close(probe);
            Volatile.Write(ref _epoll, epoll);
            new Thread(Run) { IsBackground = true, Name = "flotilla exit watch" }.Start();
            return true;
        }
    }

    private void Run()
    {
        var events = new byte[MaxEvents * EventSize];
        while (true)
        {
            var n = epoll_wait(_epoll, events, MaxEvents, -1);
            if (n < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno == EINTR) continue;
                // Never again: every waiter learns that its wait failed (not that its process ended) and polls.
                _broken = $"epoll_wait: errno {errno}";
                foreach (var key in _waiters.Keys)
                    if (_waiters.TryRemove(key, out var w))
                    {
                        w.Release();
                        w.Exited.TrySetException(new ProcessExitWatchException(_broken));
                    }
                return;
            }
            for (var i = 0; i < n; i++)
            {
                var key = BinaryPrimitives.ReadUInt64LittleEndian(events.AsSpan(i * EventSize + DataOffset, 8));
                if (!_waiters.TryRemove(key, out var w)) continue; // disposed meanwhile
                w.Release();
                w.Exited.TrySetResult();
            }
        }
    }

    /// <summary>One wait: <see cref="Exited"/> completes when the process has ended. Dispose to stop waiting.</summary>
    public sealed class Waiter : IDisposable
    {
        private readonly ProcessExitWatch _watch;
        private readonly ulong _key;
        private int _fd;

        internal Waiter(ProcessExitWatch watch, ulong key, int fd)
        {
            _watch = watch;
            _key = key;
            _fd = fd;
        }

        internal TaskCompletionSource Exited { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>Completes when the process has ended; faults with <see cref="ProcessExitWatchException"/> if the watch broke.</summary>
        public Task Ended => Exited.Task;

        internal void Release()
        {
            var fd = Interlocked.Exchange(ref _fd, -1);
            if (fd < 0) return;
            epoll_ctl(_watch._epoll, EPOLL_CTL_DEL, fd, stackalloc byte[16]);
            Native.close(fd);
        }

        public void Dispose()
        {
            if (_watch._waiters.TryRemove(_key, out _)) Release();
            Exited.TrySetCanceled();
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial long syscall(long number, int pid, uint flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int epoll_create1(int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int epoll_ctl(int epfd, int op, int fd, ReadOnlySpan<byte> @event);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int epoll_wait(int epfd, Span<byte> events, int maxEvents, int timeout);
}

/// <summary>The exit watch itself failed: whether the process ended is unknown.</summary>
public sealed class ProcessExitWatchException(string message) : Exception(message);
