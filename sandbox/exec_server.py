"""The command server that runs inside the session container (started once, as the sandbox user).

A `docker exec` costs a runc start per command (about 0.1 s); this process instead forks each
command itself, so a command's round trip is a pipe write and a fork. It reads one JSON request
per line on stdin and writes binary frames on stdout:

    request  {"id": N, "cmd": "...", "env": {...}}  or  {"id": N, "kill": true}
    frame    >IBI header (id, kind, length) + payload; kind 1 = output, 2 = exit code (ASCII), 3 = ready

Each command runs as `bash -c` in a new session and process group, stdin from /dev/null, stderr
into stdout. When it exits, whatever it left in its group is killed. It has no more rights than
the commands it runs (same uid, same container), so nothing here is a security boundary.
This file is executed with the image's python3 (`python3 -c`): standard library only, Python 3.8+.
"""

import json
import os
import signal
import subprocess
import sys
import threading

OUTPUT, EXIT, READY = 1, 2, 3
WORKDIR = "/workspace"
DRAIN_AFTER_EXIT = 2.0  # seconds to wait for detached processes that still hold the output pipe

out_lock = threading.Lock()
running = {}  # id -> Popen


def send(ident, kind, payload):
    header = ident.to_bytes(4, "big") + bytes([kind]) + len(payload).to_bytes(4, "big")
    with out_lock:
        sys.stdout.buffer.write(header + payload)
        sys.stdout.buffer.flush()


def kill_session(pid):
    """SIGKILL the command's process group, then anything else left in its session."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 3 and fields[3] == str(pid):
            try:
                os.kill(int(entry), signal.SIGKILL)
            except OSError:
                pass


def run(ident, command, env):
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        proc = subprocess.Popen(
            ["/bin/bash", "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=WORKDIR,
            env=full_env,
        )
    except OSError as exc:
        send(ident, OUTPUT, f"cannot start bash: {exc}\n".encode())
        send(ident, EXIT, b"127")
        return
    running[ident] = proc
    done = threading.Event()

    def pump():
        fd = proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            if not chunk or done.is_set():
                break
            send(ident, OUTPUT, chunk)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    code = proc.wait()
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # background jobs end with their command
    except OSError:
        pass
    reader.join(DRAIN_AFTER_EXIT)
    done.set()
    running.pop(ident, None)
    send(ident, EXIT, str(128 - code if code < 0 else code).encode())


def main():
    send(0, READY, b"")
    for line in sys.stdin:
        try:
            request = json.loads(line)
        except ValueError:
            continue
        ident = int(request.get("id", 0))
        if request.get("kill"):
            proc = running.get(ident)
            if proc is not None:
                kill_session(proc.pid)
            continue
        threading.Thread(target=run, args=(ident, request["cmd"], request.get("env")), daemon=True).start()


if __name__ == "__main__":
    main()
