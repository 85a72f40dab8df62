#!/usr/bin/python3
"""docker-py (Debian's python3-docker): create options that must be applied, not stored and ignored — --mount
(bind, read-only), --tmpfs, --init (docker stop of a shell returns at once) and a healthcheck followed until healthy,
as Testcontainers' UntilContainerIsHealthy does. See ../README.md for the environment a scenario gets."""
import os
import sys
import tempfile
import time

import docker
from docker.types import Mount

IMAGE = os.environ["FLOTILLA_IMAGE"]


def check(ok, what):
    if not ok:
        sys.exit(f"FAILED: {what}")


client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"])
source = tempfile.mkdtemp(prefix="flotilla-py-mount-")
with open(os.path.join(source, "f"), "w") as f:
    f.write("from-host\n")

c = client.containers.run(
    IMAGE, ["sh", "-c", "sleep 600"], name="py-options", detach=True, init=True,
    mounts=[Mount("/ro", source, type="bind", read_only=True)],
    tmpfs={"/scratch": "size=8m"},
    healthcheck={"test": ["CMD-SHELL", "test -f /tmp/ok"], "interval": 200_000_000, "retries": 2})
try:
    r = c.exec_run(["cat", "/ro/f"])
    check(r.exit_code == 0 and r.output == b"from-host\n", f"bind mount read: {r}")
    r = c.exec_run(["sh", "-c", "echo x > /ro/g"])
    check(r.exit_code != 0, "the read-only bind mount took a write")
    r = c.exec_run(["grep", " /scratch ", "/proc/mounts"])
    check(r.exit_code == 0 and b"tmpfs" in r.output and b"size=8192k" in r.output, f"tmpfs: {r.output!r}")
    r = c.exec_run(["cat", "/proc/1/cmdline"])
    check(b"docker-init" in r.output, f"PID 1 is not the init: {r.output!r}")

    # The healthcheck: starting, then unhealthy (no /tmp/ok), then healthy once the file exists.
    def health():
        c.reload()
        return c.attrs["State"].get("Health", {}).get("Status")
    check(health() in ("starting", "unhealthy"), f"first health {health()}")
    deadline = time.time() + 20
    while health() != "unhealthy" and time.time() < deadline:
        time.sleep(0.2)
    check(health() == "unhealthy", f"never unhealthy: {health()}")
    c.exec_run(["touch", "/tmp/ok"])
    deadline = time.time() + 20
    while health() != "healthy" and time.time() < deadline:
        time.sleep(0.2)
    check(health() == "healthy", f"never healthy: {health()}")
    check(client.containers.list(filters={"health": "healthy", "name": "py-options"}) != [], "health filter")

    started = time.time()
    c.stop(timeout=10)
    took = time.time() - started
    check(took < 3, f"stop of an --init shell took {took:.1f} s")
finally:
    c.remove(force=True)
print("ok")
