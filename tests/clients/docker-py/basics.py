#!/usr/bin/python3
"""docker-py (Debian's python3-docker): lifecycle, logs, exec and attach on a pooled connection, archive, events
with until, volumes; over TCP and the unix socket. See ../README.md for the environment a scenario gets."""
import io
import os
import sys
import tarfile
import time

import docker

IMAGE = os.environ["FLOTILLA_IMAGE"]


def check(ok, what):
    if not ok:
        sys.exit(f"FAILED: {what}")


def scenario(client, label):
    since = int(time.time()) - 1
    name = f"py-{label}"
    # Lifecycle: create and start, inspect, logs.
    c = client.containers.run(IMAGE, ["sh", "-c", "echo started; sleep 600"], name=name, detach=True)
    c.reload()
    check(c.status == "running", f"{label}: status {c.status}")
    for _ in range(50):
        if b"started" in c.logs():
            break
        time.sleep(0.1)
    check(c.logs() == b"started\n", f"{label}: logs {c.logs()!r}")

    # exec on the client's pooled connection (the start is not the connection's first request).
    r = c.exec_run(["sh", "-c", "echo out; echo err >&2; exit 3"], demux=True)
    check(r.exit_code == 3 and r.output == (b"out\n", b"err\n"), f"{label}: exec {r}")
    r = c.exec_run(["cat", "/proc/self/status"])
    check(r.exit_code == 0 and b"Name:" in r.output, f"{label}: second exec {r.exit_code}")

    # attach before start on a pooled connection, as `docker run` does.
    a = client.containers.create(IMAGE, ["sh", "-c", "sleep 1; echo attached-out"], name=f"{name}-attach")
    stream = a.attach(stdout=True, stderr=True, stream=True, logs=True)
    a.start()
    out = b"".join(stream)
    check(out == b"attached-out\n", f"{label}: attach {out!r}")
    check(a.wait(timeout=30)["StatusCode"] == 0, f"{label}: attach wait")
    a.remove()

    # Archive both ways.
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        payload = b"through the archive\n"
        info = tarfile.TarInfo("copied.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    check(c.put_archive("/tmp", data.getvalue()), f"{label}: put_archive")
    bits, stat = c.get_archive("/tmp/copied.txt")
    with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tar:
        got = tar.extractfile("copied.txt").read()
    check(got == payload and stat["name"] == "copied.txt", f"{label}: get_archive {got!r} {stat}")

    # Volumes: a named volume outlives the container that wrote it.
    vol = client.volumes.create(f"pyvol-{label}")
    out = client.containers.run(IMAGE, ["sh", "-c", "echo kept > /data/f"], volumes={vol.name: {"bind": "/data", "mode": "rw"}}, remove=True)
    out = client.containers.run(IMAGE, ["cat", "/data/f"], volumes={vol.name: {"bind": "/data", "mode": "ro"}}, remove=True)
    check(out == b"kept\n", f"{label}: volume read {out!r}")
    vol.remove()

    c.remove(force=True)

    # Events with until: the stream ends by itself, every event whole.
    until = int(time.time()) + 1
    time.sleep(max(0, until - time.time()) + 0.2)
    events = list(client.events(since=since, until=until, decode=True))
    actions = {(e.get("Actor", {}).get("Attributes", {}).get("name"), e.get("Action")) for e in events}
    check((name, "start") in actions and (name, "destroy") in actions, f"{label}: events {sorted(a for a in actions if a[0])}")


scenario(docker.DockerClient(base_url=os.environ["DOCKER_HOST"]), "tcp")
scenario(docker.DockerClient(base_url="unix://" + os.environ["FLOTILLA_SOCKET"]), "unix")
print("ok")
