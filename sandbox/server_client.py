"""The host side of the in-container command server (see exec_server.py): requests go in on the
server's stdin, framed output comes back on the exec's multiplexed stream."""

from __future__ import annotations

import itertools
import json
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsagent.sandbox.base import ExecResult
from dsagent.sandbox.output import OutputBuffer

SERVER_SOURCE = Path(__file__).with_name("exec_server.py")
BOOT = "import json, sys; exec(compile(json.loads(sys.stdin.readline()), 'dsagent-exec-server', 'exec'))"
DOCKER_HEADER = struct.Struct(">BxxxL")  # docker's stream frame: stream id, size
FRAME = struct.Struct(">IBI")  # ours: command id, kind, size
OUTPUT, EXIT, READY = 1, 2, 3
KILL_GRACE = 10.0  # seconds a killed command gets to report its exit


@dataclass
class _Pending:
    buffer: OutputBuffer
    limit: int
    done: threading.Event = field(default_factory=threading.Event)
    attention: threading.Event = field(default_factory=threading.Event)
    exit_code: int | None = None
    over_limit: bool = False


class ServerGone(Exception):
    """The command server is not running (never started, or killed by a command)."""


class ExecServer:
    def __init__(self, api: Any, container_id: str, user: str, start_timeout: float = 30.0) -> None:
        # The source comes as the first line of stdin: `ps` in the sandbox shows a short command line.
        exec_id = api.exec_create(container_id, ["python3", "-u", "-c", BOOT], stdin=True, tty=False, user=user)["Id"]
        stream = api.exec_start(exec_id, socket=True)
        self.sock = getattr(stream, "_sock", stream)
        self.sock.settimeout(None)
        self.sock.sendall((json.dumps(SERVER_SOURCE.read_text()) + "\n").encode())
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._write_lock = threading.Lock()
        self._ready = threading.Event()
        self.alive = True
        threading.Thread(target=self._read, name="sandbox-server", daemon=True).start()
        if not self._ready.wait(start_timeout) or not self.alive:
            self.close()
            raise ServerGone("the command server did not start (is python3 in the image?)")

    # -- reading ---------------------------------------------------------------------------------
    def _read(self) -> None:
        raw, ours = b"", b""
        try:
            while True:
                data = self.sock.recv(1 << 16)
                if not data:
                    break
                raw += data
                payload, raw = _docker_payload(raw)
                ours = self._dispatch(ours + payload)
        except OSError:
            pass
        finally:
            self.alive = False
            self._ready.set()  # wake a start that waits for a server that never came up
            for pending in list(self._pending.values()):
                pending.done.set()
                pending.attention.set()

    def _dispatch(self, data: bytes) -> bytes:
        pos = 0
        while len(data) - pos >= FRAME.size:
            ident, kind, size = FRAME.unpack_from(data, pos)
            if len(data) - pos - FRAME.size < size:
                break
            payload = data[pos + FRAME.size : pos + FRAME.size + size]
            pos += FRAME.size + size
            if kind == READY:
                self._ready.set()
                continue
            pending = self._pending.get(ident)
            if pending is None:
                continue
            if kind == OUTPUT:
                pending.buffer.write(payload)
                if pending.buffer.total > pending.limit and not pending.over_limit:
                    pending.over_limit = True
                    pending.attention.set()
            elif kind == EXIT:
                pending.exit_code = int(payload or b"-1")
                pending.done.set()
                pending.attention.set()
        return data[pos:]

    # -- commands --------------------------------------------------------------------------------
    def _send(self, request: dict[str, Any]) -> None:
        line = (json.dumps(request) + "\n").encode()
        with self._write_lock:
            try:
                self.sock.sendall(line)
            except OSError:
                self.alive = False
                raise ServerGone("the command server stopped") from None

    def run(
        self,
        command: str,
        timeout: float,
        env: dict[str, str] | None,
        max_output: int,
        cancel: threading.Event | None = None,
        buffer: OutputBuffer | None = None,
    ) -> ExecResult:
        if not self.alive:
            raise ServerGone("the command server stopped")
        ident = next(self._ids)
        pending = self._pending[ident] = _Pending(buffer or OutputBuffer(), max_output)
        start = time.monotonic()
        deadline = start + timeout
        why = None  # "timeout" | "output" | "cancel" once we had to kill it
        killed_at = 0.0
        try:
            self._send({"id": ident, "cmd": command, "env": env or {}})
            while not pending.done.is_set():
                pending.attention.wait(min(0.2, max(0.0, deadline - time.monotonic())))
                pending.attention.clear()
                if why and time.monotonic() - killed_at > KILL_GRACE:
                    break  # the server does not answer any more: report what we have
                if pending.done.is_set() or why:
                    continue
                if pending.over_limit:
                    why = "output"
                elif cancel is not None and cancel.is_set():
                    why = "cancel"
                elif time.monotonic() >= deadline:
                    why = "timeout"
                if why:
                    killed_at = time.monotonic()
                    self._send({"id": ident, "kill": True})
        finally:
            self._pending.pop(ident, None)
        if pending.exit_code is None:  # the server died under this command (it killed it, or OOM)
            pending.buffer.write(b"\n[the sandbox's command server stopped while this command ran]\n")
        return ExecResult(
            exit_code=-1 if pending.exit_code is None else pending.exit_code,
            output=pending.buffer.text(),
            duration=time.monotonic() - start,
            timed_out=why == "timeout",
            cancelled=why == "cancel",
            output_bytes=pending.buffer.total,
            truncated=pending.buffer.truncated,
            output_limited=why == "output",
        )

    def close(self) -> None:
        self.alive = False
        try:
            self.sock.close()
        except OSError:
            pass


def _docker_payload(raw: bytes) -> tuple[bytes, bytes]:
    """The server's stdout from docker's framed stream (its stderr is dropped): (payload, incomplete rest)."""
    parts, pos = [], 0
    while len(raw) - pos >= DOCKER_HEADER.size:
        stream, size = DOCKER_HEADER.unpack_from(raw, pos)
        if len(raw) - pos - DOCKER_HEADER.size < size:
            break
        if stream == 1:
            parts.append(raw[pos + DOCKER_HEADER.size : pos + DOCKER_HEADER.size + size])
        pos += DOCKER_HEADER.size + size
    return b"".join(parts), raw[pos:]
