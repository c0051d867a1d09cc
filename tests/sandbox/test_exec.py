"""Commands in the session container: results, closed stdin, environment, cancellation, limits applied."""

from __future__ import annotations

import threading
import time

import pytest
from dsagent.config import SandboxSettings
from dsagent.sandbox.base import SandboxError
from dsagent.sandbox.container import DockerSandbox
from dsagent.sandbox.workspace import Workspace

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def sandbox(sandbox_image: str, tmp_path_factory: pytest.TempPathFactory):
    settings = SandboxSettings(memory="512m", pids=256, cpus=1.5, command_timeout=30)
    with DockerSandbox(tmp_path_factory.mktemp("ws"), settings, image=sandbox_image) as box:
        yield box


def test_exit_code_and_interleaved_output(sandbox):
    result = sandbox.exec("echo one; echo two >&2; echo three; exit 7")
    assert result.exit_code == 7 and not result.ok and not result.timed_out
    assert result.output == "one\ntwo\nthree\n"
    assert result.summary().startswith("exit code 7")
    assert result.duration > 0


def test_stdin_is_closed_and_ci_is_set(sandbox):
    result = sandbox.exec("read line; echo read=$?; cat; echo CI=$CI HOME=$HOME; pwd", timeout=10)
    assert result.output == "read=1\nCI=true HOME=/tmp\n/workspace\n"
    assert sandbox.exec("echo $EXTRA", env={"EXTRA": "given"}).output == "given\n"


def test_background_processes_end_with_their_command(sandbox):
    start = time.monotonic()
    result = sandbox.exec("sleep 300 & echo started")
    assert result.output == "started\n" and time.monotonic() - start < 2.0  # nothing holds the stream open
    listing = sandbox.exec("cat /proc/[0-9]*/cmdline | tr '\\0' ' '").output
    assert "sleep 300" not in listing


@pytest.mark.slow
def test_quiet_command_outlives_the_client_request_timeout(sandbox_image, tmp_path):
    import docker

    client = docker.from_env(timeout=3)
    with DockerSandbox(tmp_path, SandboxSettings(), image=sandbox_image, client=client) as box:
        result = box.exec("sleep 5; echo done", timeout=30)
    assert result.ok and result.output == "done\n"


def test_cancel_kills_the_running_command(sandbox):
    threading.Timer(1.0, sandbox.cancel).start()
    result = sandbox.exec("echo partial; sleep 100", timeout=60)
    assert result.cancelled and not result.timed_out and result.duration < 10
    assert result.output.startswith("partial\n")
    assert sandbox.exec("echo next").output == "next\n"  # later commands are not cancelled


def test_live_output_shows_a_running_command_as_it_prints(sandbox):
    done: list = []
    runner = threading.Thread(target=lambda: done.append(sandbox.exec("echo one; sleep 3; echo two", timeout=30)))
    runner.start()
    deadline = time.monotonic() + 20
    while "one" not in sandbox.live_output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox.live_output() == "one\n" and not done  # printed so far, while it still runs
    runner.join()
    assert done[0].output == "one\ntwo\n" and sandbox.live_output() == ""


def test_pid1_outlives_signals_and_reaps_orphans(sandbox):
    assert sandbox.exec("kill -9 1; kill -TERM 1; for i in $(seq 20); do (sleep 0.05 &); done; sleep 2.5").ok
    sandbox.container.reload()
    assert sandbox.container.status == "running"
    zombies = sandbox.exec("cat /proc/[0-9]*/stat 2>/dev/null | awk '$3 == \"Z\"' | wc -l")
    assert zombies.output.strip() == "0"


def test_bytecode_stays_out_of_the_workspace(sandbox):
    (sandbox.workspace / "mod.py").write_text("VALUE = 3\n")
    assert sandbox.exec("python3 -c 'import mod; print(mod.VALUE)'").output == "3\n"
    assert not (sandbox.workspace / "__pycache__").exists()


def test_read_file(sandbox):
    assert sandbox.exec("seq 1 300000 > /tmp/numbers").ok  # ~2 MB: more than a command's output keeps
    text = sandbox.read_file("/tmp/numbers")
    assert text.splitlines()[-1] == "300000" and len(text.splitlines()) == 300000
    with pytest.raises(SandboxError):
        sandbox.read_file("/tmp/absent")


def test_container_is_configured_as_settings_say(sandbox):
    sandbox.container.reload()
    host = sandbox.container.attrs["HostConfig"]
    assert host["Memory"] == 512 * 1024 * 1024 and host["MemorySwap"] == host["Memory"]
    assert host["PidsLimit"] == 256 and host["NanoCpus"] == int(1.5e9)
    assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["ReadonlyRootfs"] is True and host["NetworkMode"] == "none"
    assert "/tmp" in host["Tmpfs"]
    labels = sandbox.container.labels
    assert labels["dsagent.sandbox"] == "1" and labels["dsagent.workspace"] == str(sandbox.workspace)


def test_git_works_in_a_worktree_and_the_repository_stays_read_only(sandbox_image, git_repo):
    (git_repo / "README.md").write_text("changed\n")
    with Workspace(git_repo) as workspace, DockerSandbox(workspace.root, image=sandbox_image) as box:
        status = box.exec("git status --short")
        assert status.ok, status.output
        assert status.output.strip() == ""  # the workspace starts from the user's state
        assert box.exec("echo more >> README.md && git diff --stat").output.strip().startswith("README.md")
        hooks = git_repo / ".git" / "hooks"
        planted = box.exec(f"echo evil > {hooks}/post-checkout")
        assert planted.exit_code != 0 and "Read-only file system" in planted.output
        assert not (hooks / "post-checkout").exists()


def test_missing_image_is_one_clear_error(tmp_path):
    with pytest.raises(SandboxError, match="dsagent sandbox build"):
        DockerSandbox(tmp_path, image="dsagent-no-such-image:never").start()
