"""One command in a running container: a timeout that kills its process group, bounded output.

The command runs under a tiny /bin/sh wrapper that starts it as the leader of a new session and
process group and records its pid in /tmp; on timeout a second exec kills that group and anything
else left in the session. Output is read
from the raw multiplexed stream into an `OutputBuffer`, so host memory stays bounded however
much the command prints.
"""

from __future__ import annotations

import secrets
import socket
import struct
import threading
import time
from typing import Any

from dsagent.sandbox.base import WORKDIR, ExecResult
from dsagent.sandbox.output import OutputBuffer

# $0 = pid file, $1 = the command. bash runs as leader of its own session and process group (setsid
# does not fork: a background job is no group leader). Whatever the command left running in its
# group (background jobs, a fork bomb) is killed when it ends, so nothing outlives its command
# unless it detached itself with setsid, and nothing holds the output stream open. stderr joins
# stdout in one pipe so the combined output keeps the order it was written in.
WRAPPER = (
    'setsid /bin/bash -c "$1" </dev/null 2>&1 & b=$!; echo $b > "$0"; wait $b 2>/dev/null; rc=$?; '
    'kill -9 -$b 2>/dev/null; rm -f "$0"; exit $rc'
)

# $0 = pid file. Kill the group, then strays that left the group but not the session.
KILLER = r"""
pid=$(cat "$0" 2>/dev/null) || exit 0
kill -KILL -- "-$pid" "$pid" 2>/dev/null
for stat in /proc/[0-9]*/stat; do
  line=$(cat "$stat" 2>/dev/null) || continue
  rest=${line##*) }
  fields=($rest)
  if [ "${fields[3]}" = "$pid" ]; then p=${stat#/proc/}; kill -KILL "${p%/stat}" 2>/dev/null; fi
done
rm -f "$0"
"""

HEADER = struct.Struct(">BxxxL")  # stream id, 3 pad bytes, payload size


class _Reader(threading.Thread):
    """Drains the exec's stream into a buffer; flags when output passes the limit."""

    def __init__(self, sock: socket.socket, buffer: OutputBuffer, limit: int, attention: threading.Event) -> None:
        super().__init__(daemon=True)
        self.sock, self.buffer, self.limit, self.attention = sock, buffer, limit, attention
        self.over_limit = False
        self.finished = threading.Event()

    def run(self) -> None:
        pending = b""
        try:
            while True:
                data = self.sock.recv(1 << 16)
                if not data:
                    break
                pending = self._consume(pending + data)
        except OSError:
            pass  # socket closed under us after a kill
        finally:
            self.finished.set()
            self.attention.set()

    def _consume(self, data: bytes) -> bytes:
        """Strip the 8-byte frame headers; return the incomplete rest."""
        view, pos = memoryview(data), 0
        while len(data) - pos >= HEADER.size:
            _, size = HEADER.unpack_from(data, pos)
            if len(data) - pos - HEADER.size < size:
                break
            self.buffer.write(bytes(view[pos + HEADER.size : pos + HEADER.size + size]))
            pos += HEADER.size + size
        if self.buffer.total > self.limit and not self.over_limit:
            self.over_limit = True
            self.attention.set()
        return data[pos:]


def run_exec(
    api: Any,
    container_id: str,
    command: str,
    timeout: float,
    *,
    user: str = "",
    env: dict[str, str] | None = None,
    max_output: int = 256 << 20,
    buffer: OutputBuffer | None = None,
    cancel: threading.Event | None = None,
) -> ExecResult:
    """Run `command` with bash in the container and wait at most `timeout` seconds (or until `cancel`)."""
    pidfile = f"/tmp/.dsagent-exec-{secrets.token_hex(6)}"
    start = time.monotonic()
    exec_id = api.exec_create(
        container_id,
        ["/bin/sh", "-c", WRAPPER, pidfile, command],
        stdin=False,
        tty=False,
        environment=env,
        workdir=WORKDIR,
        user=user,
    )["Id"]
    stream = api.exec_start(exec_id, socket=True)
    sock = getattr(stream, "_sock", stream)
    sock.settimeout(None)  # the client's request timeout must not end a quiet, long command
    buffer = buffer or OutputBuffer()
    attention = threading.Event()
    reader = _Reader(sock, buffer, max_output, attention)
    reader.start()
    deadline = start + timeout
    why = None  # "timeout" | "output" | "cancel" when we had to kill it
    while not reader.finished.is_set():
        attention.wait(min(0.2, max(0.0, deadline - time.monotonic())))
        attention.clear()
        if reader.finished.is_set():
            break
        if reader.over_limit:
            why = "output"
        elif cancel is not None and cancel.is_set():
            why = "cancel"
        elif time.monotonic() >= deadline:
            why = "timeout"
        else:
            continue
        _kill(api, container_id, pidfile, user, reader)
        break
    reader.finished.wait(5.0)
    duration = time.monotonic() - start
    sock.close()
    return ExecResult(
        exit_code=_exit_code(api, exec_id),
        output=buffer.text(),
        duration=duration,
        timed_out=why == "timeout",
        cancelled=why == "cancel",
        output_bytes=buffer.total,
        truncated=buffer.truncated,
        output_limited=why == "output",
    )


def _kill(api: Any, container_id: str, pidfile: str, user: str, reader: _Reader) -> None:
    # The pid file may not exist yet when the timeout is tiny: try a few times.
    for _ in range(5):
        run_quick(api, container_id, ["/bin/bash", "-c", KILLER, pidfile], user=user)
        if reader.finished.wait(0.5):
            return


def _exit_code(api: Any, exec_id: str) -> int:
    for _ in range(50):  # the exit status lands a moment after the stream closes
        info = api.exec_inspect(exec_id)
        if not info.get("Running") and info.get("ExitCode") is not None:
            return int(info["ExitCode"])
        time.sleep(0.02)
    return -1


def run_quick(api: Any, container_id: str, argv: list[str], user: str = "") -> tuple[int, str]:
    """A short helper command (no timeout handling); returns exit code and output."""
    exec_id = api.exec_create(container_id, argv, stdin=False, tty=False, user=user)["Id"]
    output = api.exec_start(exec_id, demux=False) or b""
    return _exit_code(api, exec_id), output.decode("utf-8", errors="replace")
