"""Escape attempts from the session container: each must be contained and leave the host unaffected.

Two containers for the module: `locked` runs as a non-root uid (1000 when the tests run as root)
on a workspace owned by it, with small limits; `default` runs with default settings, i.e. as the
host user (root in CI), where dropped capabilities are what stops the attempts. Network tests send
traffic to loopback addresses only.
"""

from __future__ import annotations

import os
import resource
import secrets
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from dsagent.config import SandboxSettings
from dsagent.sandbox.container import DockerSandbox

pytestmark = pytest.mark.docker

PIDS = 96


@pytest.fixture(scope="module")
def locked(sandbox_image: str, other_uid: int, tmp_path_factory: pytest.TempPathFactory):
    workspace = tmp_path_factory.mktemp("locked")
    workspace.chmod(0o755)  # a checkout's usual mode (mktemp makes 0700)
    if os.getuid() == 0:
        os.chown(workspace, other_uid, other_uid)
    settings = SandboxSettings(
        user=f"{other_uid}:{other_uid}", memory="256m", pids=PIDS, cpus=1.0, command_timeout=60, max_output=64 << 20
    )
    with DockerSandbox(workspace, settings, image=sandbox_image) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def default(sandbox_image: str, tmp_path_factory: pytest.TempPathFactory):
    with DockerSandbox(tmp_path_factory.mktemp("default"), SandboxSettings(), image=sandbox_image) as sandbox:
        yield sandbox


def processes(sandbox: DockerSandbox) -> list[str]:
    """Command lines of every process in the container except the listing itself."""
    script = 'for f in /proc/[0-9]*/cmdline; do c=$(tr "\\0\\n" "  " < $f 2>/dev/null); echo "$c"; done'
    listing = sandbox.exec(script, timeout=30).output.splitlines()
    return [line for line in listing if line.strip() and "/proc/[0-9]*" not in line]


# -- network ---------------------------------------------------------------------------------------
def test_only_loopback_interface(locked):
    result = locked.exec("python3 -c 'import socket; print(sorted(n for _, n in socket.if_nameindex()))'")
    assert result.ok, result.output
    assert result.output.strip() == "['lo']"
    assert [line.split(":")[0].strip() for line in locked.exec("tail -n +3 /proc/net/dev").output.splitlines()] == [
        "lo"
    ]


def test_name_resolution_fails(locked):
    result = locked.exec("python3 -c 'import socket; socket.getaddrinfo(\"pypi.org\", 443)'", timeout=30)
    assert result.exit_code != 0
    assert "gaierror" in result.output


@pytest.fixture
def host_server():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    accepted: list[tuple] = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, peer = server.accept()
            except OSError:
                continue
            accepted.append(peer)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join(2)
    server.close()


def test_host_loopback_server_is_not_reachable(locked, host_server):
    """A server on the host's 127.0.0.1 answers the host but not the container (its own loopback)."""
    port, accepted = host_server
    with socket.create_connection(("127.0.0.1", port), timeout=5):  # control: the host reaches it
        pass
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3); print('CONNECTED')"
    result = locked.exec(f'python3 -c "{probe}"', timeout=30)
    assert "CONNECTED" not in result.output
    assert "ConnectionRefusedError" in result.output
    assert len(accepted) == 1  # only the host's own connection


# -- filesystem ------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["locked", "default"])
def test_writes_outside_workspace_fail(which, request):
    sandbox = request.getfixturevalue(which)
    for path in ("/etc/dsagent", "/usr/bin/dsagent", "/dsagent", "/opt/venv/dsagent", "/root/dsagent"):
        result = sandbox.exec(f"echo x > {path}")
        assert result.exit_code != 0, path
        # As root (the host user in CI) only the read-only root filesystem stops it.
        assert "Read-only file system" in result.output or (which == "locked" and "Permission denied" in result.output)


def test_tmp_is_private_and_workspace_is_shared(locked):
    name = f"dsagent-probe-{secrets.token_hex(4)}"
    assert locked.exec(f"echo secret > /tmp/{name} && echo hi > /workspace/{name}").ok
    assert not Path("/tmp", name).exists()
    assert (locked.workspace / name).read_text() == "hi\n"


def test_etc_shadow_unreadable(locked, default):
    denied = locked.exec("cat /etc/shadow")
    assert denied.exit_code != 0 and "Permission denied" in denied.output
    # As the host user (root in CI) it reads the image's file at most, never the host's.
    seen = default.exec("cat /etc/shadow").output
    host = Path("/etc/shadow")
    if os.access(host, os.R_OK):
        secret_lines = [
            line for line in host.read_text().splitlines() if line.split(":")[1] not in ("", "*", "!", "!*")
        ]
        assert not any(line in seen for line in secret_lines)


# -- limits ----------------------------------------------------------------------------------------
def test_fork_bomb_is_capped_by_the_pids_limit(locked):
    # The bomb runs for 4 s (a busy loop of builtins: no fork needed), then reports the cgroup's count.
    bomb = (
        "bomb() { bomb | bomb & }; bomb; SECONDS=0; while (( SECONDS < 4 )); do :; done; "
        "read -r n < /sys/fs/cgroup/pids/pids.current 2>/dev/null || read -r n < /sys/fs/cgroup/pids.current; "
        "echo pids=$n"
    )
    result = locked.exec(bomb, timeout=30)
    assert "Resource temporarily unavailable" in result.output
    counts = [int(line.split("=")[1]) for line in result.output.splitlines() if line.startswith("pids=")]
    assert counts and counts[0] <= PIDS
    assert locked.exec("echo alive").output == "alive\n"  # the group died with its command
    assert len(processes(locked)) < 5
    assert subprocess.run(["true"]).returncode == 0  # the host still forks


def test_memory_bomb_is_reported_as_oom(locked):
    result = locked.exec("python3 -c 'b = []\nwhile True: b.append(bytearray(16 << 20))'", timeout=60)
    assert result.oom_killed, result
    assert result.exit_code == 137 and not result.timed_out
    assert "out of memory" in result.summary()
    assert locked.exec("echo alive").output == "alive\n"
    assert not locked.exec("true").oom_killed  # reported once, not on every later command


def test_infinite_loop_times_out_and_its_process_group_dies(locked):
    result = locked.exec("echo started; sleep 1000 & sleep 1001 & while :; do :; done", timeout=2)
    assert result.timed_out and not result.ok
    assert result.output.startswith("started\n")  # partial output kept
    assert 2 <= result.duration < 15
    left = processes(locked)
    assert not any("sleep 100" in line or "while :" in line for line in left), left


def test_output_flood_keeps_host_memory_bounded(locked):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    result = locked.exec("head -c 1000000000 /dev/zero | tr '\\0' a; echo end", timeout=120)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert result.output_limited and result.truncated
    assert result.output_bytes >= 64 << 20
    assert len(result.output) < 3 << 20
    assert "bytes of output omitted" in result.output
    assert grown_mib < 100, f"host memory grew {grown_mib:.0f} MiB"


def test_long_output_keeps_head_and_tail(locked):
    result = locked.exec("seq 1 3000000", timeout=120)  # ~20 MB, under the limit: read to the end
    assert result.ok and result.truncated and not result.output_limited
    assert result.output.startswith("1\n2\n3\n")
    assert result.output.endswith("2999999\n3000000\n")


# -- privileges ------------------------------------------------------------------------------------
def test_setuid_binary_gives_no_privileges(locked):
    drop = locked.workspace / "suid"
    drop.mkdir()
    drop.chmod(0o777)
    # Plant a setuid-root copy of `id` as root inside the container (no capabilities needed: root owns it).
    planted = locked.container.exec_run(
        ["sh", "-c", "cp /usr/bin/id /workspace/suid/id && chmod 4755 /workspace/suid/id"], user="0:0"
    )
    assert planted.exit_code == 0, planted.output
    stat = (drop / "id").stat()
    assert stat.st_uid == 0 and stat.st_mode & 0o4000
    uid = locked.user.split(":")[0]
    assert locked.exec("/workspace/suid/id -u").output.strip() == uid  # euid unchanged: no-new-privileges
    assert "NoNewPrivs:\t1" in locked.exec("cat /proc/self/status").output


@pytest.mark.parametrize("which", ["locked", "default"])
def test_mount_raw_sockets_and_sysrq_fail(which, request):
    sandbox = request.getfixturevalue(which)
    assert sandbox.exec("mkdir -p /tmp/m && mount -t tmpfs none /tmp/m").exit_code != 0
    assert sandbox.exec("unshare --mount --user true").exit_code != 0
    raw = sandbox.exec(
        "python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)'"
    )
    assert "PermissionError" in raw.output
    # 'h' only prints help to the kernel log: harmless even if containment failed.
    assert sandbox.exec("echo h > /proc/sysrq-trigger").exit_code != 0
    assert "/proc/sysrq-trigger" in sandbox.container.attrs["HostConfig"]["ReadonlyPaths"]
    assert "0000000000000000" in sandbox.exec("grep CapEff /proc/self/status").output


def test_chown_to_root_fails(locked, default, other_uid):
    assert locked.exec("touch /workspace/mine && chown 0:0 /workspace/mine").exit_code != 0
    assert (locked.workspace / "mine").stat().st_uid == other_uid
    theirs = default.workspace / "theirs"
    theirs.write_text("x")
    if os.getuid() == 0:
        os.chown(theirs, other_uid, other_uid)
    # Even as root inside (the host user here), chown needs CAP_CHOWN, which is dropped.
    assert default.exec("chown 0:0 /workspace/theirs").exit_code != 0
    assert theirs.stat().st_uid == other_uid


def test_workspace_files_belong_to_the_host_user(default, locked, other_uid):
    assert default.exec("mkdir -p out && echo data > out/new.txt").ok
    made = default.workspace / "out" / "new.txt"
    assert (made.stat().st_uid, made.stat().st_gid) == (os.getuid(), os.getgid())
    assert locked.exec("echo data > other.txt").ok
    other = locked.workspace / "other.txt"
    assert (other.stat().st_uid, other.stat().st_gid) == (other_uid, other_uid)
