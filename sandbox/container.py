"""One long-lived, locked-down container per session; every command of the session runs in it.

PID 1 only reaps orphans; a command server started in it once (exec_server.py) forks each command,
so a command costs a few milliseconds; a `docker exec` per command is the fallback. The container sees
only the workspace (bind-mounted at /workspace), runs as the host user with no capabilities, no
privilege escalation, no network, a read-only root filesystem and a tmpfs /tmp, under memory, pids
and CPU limits.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shlex
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dsagent.config import SandboxSettings
from dsagent.sandbox.base import WORKDIR, ExecResult, SandboxError
from dsagent.sandbox.daemon import connect, image_exists
from dsagent.sandbox.execution import run_exec, run_quick
from dsagent.sandbox.gitmounts import git_mounts
from dsagent.sandbox.output import OutputBuffer
from dsagent.sandbox.prune import LABEL, prune
from dsagent.sandbox.server_client import ExecServer, ServerGone

REAPER = """
import os, time
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(1)
"""
OOM_FILES = ("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events")


def host_user() -> str:
    return f"{os.getuid()}:{os.getgid()}"


def container_env(workspace: Path, network: bool) -> dict[str, str]:
    env = {
        "CI": "true",  # tools stop asking questions and drop progress animations
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "PYTHONUNBUFFERED": "1",
        # Keep bytecode out of the workspace, so it never shows up in the patch.
        "PYTHONPYCACHEPREFIX": "/tmp/.pycache",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    if not network:
        env["PIP_NO_INDEX"] = "1"  # fail at once instead of retrying an unreachable index
    if (workspace / "src").is_dir():
        env["PYTHONPATH"] = f"{WORKDIR}/src"  # src layout: importable without an install step
    return env


class DockerSandbox:
    """A running session container. Use as a context manager, or call `close()`."""

    def __init__(
        self,
        workspace: Path,
        settings: SandboxSettings | None = None,
        image: str | None = None,
        client: Any = None,
        progress: Callable[[str], None] | None = None,
        use_server: bool = True,
    ) -> None:
        self.workspace = Path(workspace).resolve()
        self.settings = settings or SandboxSettings()
        self.image = image or self.settings.image
        self._pick_env_layer = image is None and self.settings.env_layer
        self.progress = progress or _to_stderr
        self.user = self.settings.user or host_user()
        self.session = secrets.token_hex(4)
        self.client = client or connect()
        self.container: Any = None
        self._oom_kills = 0
        self._lock = threading.Lock()
        # the commands running now: a cancel flag each, and what each has printed so far
        self._running: dict[threading.Event, OutputBuffer] = {}
        self._server: ExecServer | None = None
        self.use_server = use_server  # False: every command is a docker exec (images without python3)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> DockerSandbox:
        if not self.workspace.is_dir():
            raise SandboxError(f"workspace {self.workspace} does not exist")
        if not image_exists(self.client, self.image):
            raise SandboxError(f"sandbox image {self.image} is missing; run `dsagent sandbox build`")
        if self._pick_env_layer:
            from dsagent.sandbox.envlayer import ensure_env_image

            self.image = ensure_env_image(self.client, self.workspace, self.settings, self.progress, quiet=True)
        prune(self.client, only_orphans=True)
        with _docker_errors("could not start the sandbox container"):
            self.container = self.client.containers.run(self.image, **self._main_process(), **self._options())
        atexit.register(self.close)
        _exit_on_sigterm()
        self._start_server()
        return self

    def _start_server(self) -> None:
        """Commands go through the in-container server when it runs; docker exec is the fallback."""
        if not self.use_server:
            return
        try:
            self._server = ExecServer(self.client.api, self.id, self.user)
        except Exception:  # e.g. an image without python3: every command pays a docker exec
            self._server = None

    def _main_process(self) -> dict[str, Any]:
        """PID 1 must outlive anything a command does (`kill -9 -1` included) and reap orphans.

        The kernel drops signals sent from inside the container to its PID 1 unless it handles them,
        so a reaper loop as PID 1 cannot be killed by the sandbox user. Images without python3 get
        docker's init with `sleep infinity`, which a command can kill (ending the session).
        """
        labels = self.client.images.get(self.image).labels or {}
        if labels.get("dsagent.python"):
            return {"command": ["python3", "-c", REAPER], "init": False}
        return {"command": ["sleep", "infinity"], "init": True}

    def _options(self) -> dict[str, Any]:
        s = self.settings
        cpus = min(s.cpus, float(self.client.info().get("NCPU") or s.cpus))  # the daemon refuses more
        volumes = {str(self.workspace): {"bind": WORKDIR, "mode": "rw"}}
        volumes.update(git_mounts(self.workspace))
        return dict(
            detach=True,
            name=f"dsagent-{self.session}",
            labels={
                LABEL: "1",
                "dsagent.session": self.session,
                "dsagent.owner": f"{socket.gethostname()}:{os.getpid()}",
                "dsagent.workspace": str(self.workspace),
            },
            user=self.user,
            network_mode="bridge" if s.network else "none",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            read_only=True,
            tmpfs={"/tmp": f"rw,exec,nosuid,nodev,size={s.tmp_size}"},
            mem_limit=s.memory,
            memswap_limit=s.memory,  # no swap: a memory bomb meets the OOM killer, not the disk
            pids_limit=s.pids,
            nano_cpus=int(cpus * 1e9),
            volumes=volumes,
            working_dir=WORKDIR,
            environment=container_env(self.workspace, s.network),
            stdin_open=False,
            tty=False,
        )

    def close(self) -> None:
        with self._lock:
            container, self.container = self.container, None
        if container is None:
            return
        atexit.unregister(self.close)
        if self._server is not None:
            self._server.close()
        try:
            container.remove(force=True)
        except Exception:  # already gone (pruned, daemon restarted): nothing left to clean
            pass

    def __enter__(self) -> DockerSandbox:
        return self.start() if self.container is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def id(self) -> str:
        if self.container is None:
            raise SandboxError("the sandbox container is not running")
        return self.container.id

    # -- commands ----------------------------------------------------------------------------
    def exec(self, command: str, timeout: float | None = None, env: dict[str, str] | None = None) -> ExecResult:
        timeout = self.settings.command_timeout if timeout is None else timeout
        cancel = threading.Event()
        self._running[cancel] = buffer = OutputBuffer()
        try:
            with _docker_errors("the sandbox container did not run the command"):
                result = self._run(command, timeout, env, self.settings.max_output, cancel, buffer)
        finally:
            self._running.pop(cancel, None)
        # 137: SIGKILL; -1: the command server died under the command (the OOM killer may pick it).
        if result.exit_code in (137, -1) and not (result.timed_out or result.output_limited or result.cancelled):
            result.oom_killed = self._new_oom_kill()
        return result

    def _run(
        self,
        command: str,
        timeout: float,
        env: dict[str, str] | None,
        limit: int,
        cancel: threading.Event | None = None,
        buffer: OutputBuffer | None = None,
    ) -> ExecResult:
        server = self._server
        if server is not None and not server.alive:  # a command killed it: start another once
            server.close()
            self._start_server()
            server = self._server
        if server is not None:
            try:
                return server.run(command, timeout, env, limit, cancel, buffer)
            except ServerGone:
                pass
        return run_exec(
            self.client.api,
            self.id,
            command,
            timeout,
            user=self.user,
            env=env,
            max_output=limit,
            buffer=buffer,
            cancel=cancel,
        )

    def cancel(self) -> None:
        for flag in list(self._running):
            flag.set()

    def live_output(self, max_bytes: int = 4096) -> str:
        """What the command running now (the latest, if several) has printed so far; "" when none runs."""
        buffers = list(self._running.values())
        return buffers[-1].recent(max_bytes) if buffers else ""

    def read_file(self, path: str, limit: int = 64 << 20) -> str:
        """A file inside the container (e.g. a report in /tmp), whole; SandboxError when bigger than `limit`."""
        buffer = OutputBuffer(head=limit, tail=0)
        with _docker_errors("the sandbox container did not run the command"):
            result = self._run(f"cat {shlex.quote(path)}", 60, None, limit, buffer=buffer)
        if result.exit_code != 0 or result.truncated:
            raise SandboxError(f"cannot read {path} in the sandbox: {result.output.strip()[:200] or result.summary()}")
        return result.output

    def _new_oom_kill(self) -> bool:
        """Did the kernel's OOM killer act in this container since we last looked?"""
        code, text = run_quick(self.client.api, self.id, ["cat", *OOM_FILES])
        counts = [int(line.split()[1]) for line in text.splitlines() if line.startswith("oom_kill ")]
        if counts:
            seen, self._oom_kills = self._oom_kills, counts[0]
            return counts[0] > seen
        self.container.reload()  # no cgroup file inside: fall back to the daemon's flag
        return bool(self.container.attrs["State"].get("OOMKilled"))


@contextmanager
def _docker_errors(what: str) -> Iterator[None]:
    """Docker API failures (container gone, daemon restarted, bad option) as one-line SandboxErrors."""
    import docker.errors

    try:
        yield
    except docker.errors.DockerException as exc:
        detail = getattr(exc, "explanation", None) or str(exc)
        raise SandboxError(f"{what}: {str(detail).splitlines()[0][:200]}; `dsagent doctor` checks the setup") from None


def _to_stderr(line: str) -> None:
    print(f"sandbox: {line}", file=sys.stderr, flush=True)


def _exit_on_sigterm() -> None:
    """Turn SIGTERM into a normal exit so atexit removes the container (only from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, frame: (_ for _ in ()).throw(SystemExit(128 + signum)))
