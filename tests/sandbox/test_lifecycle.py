"""Containers go away at session end, on Ctrl-C and on SIGTERM; leftovers of a killed process are pruned."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest
from dsagent.config import SandboxSettings
from dsagent.sandbox.base import SandboxError
from dsagent.sandbox.container import DockerSandbox
from dsagent.sandbox.daemon import connect
from dsagent.sandbox.prune import LABEL, prune

pytestmark = pytest.mark.docker

HOLDER = """
import sys, time
from pathlib import Path
from dsagent.config import SandboxSettings
from dsagent.sandbox.base import SandboxError
from dsagent.sandbox.container import DockerSandbox
box = DockerSandbox(Path(sys.argv[1]), SandboxSettings(), image=sys.argv[2]).start()
print(box.container.name, flush=True)
time.sleep(120)
"""


def exists(name: str) -> bool:
    return bool(connect().containers.list(all=True, filters={"name": f"^{name}$"}))


def hold(tmp_path, image: str) -> tuple[subprocess.Popen, str]:
    """A process that opens a sandbox and waits; returns it and its container's name."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), image], stdout=subprocess.PIPE, text=True)
    name = proc.stdout.readline().strip()
    assert name.startswith("dsagent-") and exists(name)
    return proc, name


def test_close_removes_the_container(sandbox_image, tmp_path):
    box = DockerSandbox(tmp_path, SandboxSettings(), image=sandbox_image).start()
    name = box.container.name
    assert exists(name)
    box.close()
    box.close()  # twice is harmless
    assert not exists(name)


def test_a_vanished_container_is_one_clear_error(sandbox_image, tmp_path):
    box = DockerSandbox(tmp_path, SandboxSettings(), image=sandbox_image).start()
    box.container.remove(force=True)  # removed behind the session's back (prune --all, daemon restart)
    with pytest.raises(SandboxError, match="did not run the command"):
        box.exec("true")
    box.close()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_session_removes_its_container(sandbox_image, tmp_path, signum):
    proc, name = hold(tmp_path, sandbox_image)
    proc.send_signal(signum)
    proc.wait(timeout=60)
    assert not exists(name)


@pytest.mark.slow
def test_killed_session_leftover_is_pruned(sandbox_image, tmp_path):
    proc, name = hold(tmp_path, sandbox_image)
    proc.kill()  # no chance to clean up
    proc.wait(timeout=30)
    assert exists(name)
    client = connect()
    live = client.containers.create(
        sandbox_image, ["true"], labels={LABEL: "1", "dsagent.owner": f"{socket.gethostname()}:{os.getpid()}"}
    )
    try:
        removed = prune(client, only_orphans=True)
        assert name in removed and live.name not in removed
        assert not exists(name) and exists(live.name)
    finally:
        live.remove(force=True)


def test_prune_command(sandbox_image, dsagent_cli):
    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid no longer runs
    client = connect()
    owner = f"{socket.gethostname()}:{gone.pid}"
    dead = client.containers.create(sandbox_image, ["true"], labels={LABEL: "1", "dsagent.owner": owner})
    done = subprocess.run([dsagent_cli, "sandbox", "prune"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert dead.name in done.stdout and not exists(dead.name)


@pytest.fixture(scope="session")
def dsagent_cli() -> str:
    return os.path.join(os.path.dirname(sys.executable), "dsagent")
