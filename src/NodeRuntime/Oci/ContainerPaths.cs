namespace Flotilla.NodeRuntime.Oci;

/// <summary>
/// One container's files under <c>&lt;data&gt;/containers/&lt;id&gt;/</c>: the OCI bundle (config.json, etc files,
/// conmon's ctl/winsz FIFOs), conmon's persist dir (pid files, log, oom marker), the exit dir (a file named after
/// the id holding the exit code) and the socket dir (<c>&lt;id&gt;/attach</c>).
/// </summary>
public sealed record ContainerPaths(string Id, string Root)
{
    public string Bundle => Path.Combine(Root, "bundle");
    public string Userdata => Path.Combine(Root, "userdata");
    public string Exits => Path.Combine(Root, "exits");
    public string Sockets => Path.Combine(Root, "sock");
    public string Log => Path.Combine(Userdata, "ctr.log");
    public string ConmonPidFile => Path.Combine(Userdata, "conmon.pid");
    public string PidFile => Path.Combine(Userdata, "pidfile");
    public string OomFile => Path.Combine(Userdata, "oom");
    public string ExitFile => Path.Combine(Exits, Id);
    public string AttachSocket => Path.Combine(Sockets, Id, "attach");
    public string Ctl => Path.Combine(Bundle, "ctl");

    /// <summary>The <see cref="ContainerSpec"/> the container was created from, for exec after a restart.</summary>
    public string SpecFile => Path.Combine(Root, "spec.json");
}
