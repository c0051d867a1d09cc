"""The two ways a command reaches the container behave the same: the in-container command server
(the normal path) and one `docker exec` per command (images without python3, or a killed server)."""

from __future__ import annotations

import threading
import time

import pytest
from dsagent.config import SandboxSettings
from dsagent.sandbox.container import DockerSandbox

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module", params=["server", "docker-exec"])
def box(request, sandbox_image: str, tmp_path_factory: pytest.TempPathFactory):
    settings = SandboxSettings(command_timeout=30, max_output=8 << 20, memory="512m")
    sandbox = DockerSandbox(
        tmp_path_factory.mktemp("paths"), settings, image=sandbox_image, use_server=request.param == "server"
    )
    with sandbox:
        assert (sandbox._server is not None) == (request.param == "server")
        yield sandbox


def cmdlines(box: DockerSandbox) -> str:
    return box.exec("cat /proc/[0-9]*/cmdline | tr '\\0' ' '").output


def test_exit_code_and_ordered_output(box):
    result = box.exec("echo a; echo b >&2; echo c; exit 3")
    assert (result.exit_code, result.output) == (3, "a\nb\nc\n")
    assert box.exec("cat; echo $CI $X; pwd", env={"X": "given"}).output == "true given\n/workspace\n"


def test_timeout_kills_the_group_and_keeps_output(box):
    result = box.exec("echo begun; sleep 1000 & sleep 1001 & while :; do :; done", timeout=1.5)
    assert result.timed_out and result.output.startswith("begun\n") and result.duration < 10
    left = cmdlines(box)
    assert "sleep 100" not in left


def test_background_job_ends_with_its_command(box):
    start = time.monotonic()
    assert box.exec("sleep 500 & echo bg").output == "bg\n"
    assert time.monotonic() - start < 2.5
    assert "sleep 500" not in cmdlines(box)


def test_cancel(box):
    threading.Timer(0.5, box.cancel).start()
    result = box.exec("echo part; sleep 100", timeout=30)
    assert result.cancelled and result.output.startswith("part\n") and result.duration < 10


def test_output_limit_stops_a_flood(box):
    result = box.exec("yes flood", timeout=60)
    assert result.output_limited and result.output_bytes >= 8 << 20 and len(result.output) < 3 << 20
    assert result.output.startswith("flood\nflood\n")


def test_oom_is_reported(box):
    result = box.exec("python3 -c 'b = []\nwhile True: b.append(bytearray(16 << 20))'", timeout=60)
    assert result.oom_killed and result.exit_code == 137


def test_a_command_that_kills_everything_does_not_break_the_session(box):
    box.exec("kill -9 -1", timeout=10)  # every process of the sandbox user, the command server too
    assert box.exec("echo back").output == "back\n"


def test_image_without_python_falls_back_to_docker_exec(sandbox_image, tmp_path):
    from dsagent.sandbox.daemon import connect

    client = connect()
    strip = client.containers.run(
        sandbox_image,
        ["sh", "-c", "rm -f /usr/bin/python3* /opt/venv/bin/python*"],
        detach=True,
        user="0:0",
        network_mode="none",
    )
    try:
        assert strip.wait()["StatusCode"] == 0
        image = strip.commit(repository="dsagent-test-nopython", tag="latest", changes=["LABEL dsagent.python="])
    finally:
        strip.remove(force=True)
    try:
        with DockerSandbox(tmp_path, SandboxSettings(), image="dsagent-test-nopython:latest") as box:
            assert box._server is None and box.container.attrs["HostConfig"]["Init"] is True
            assert box.exec("python3 -V").exit_code == 127
            assert box.exec("echo fine").output == "fine\n"
    finally:
        client.images.remove(image.id, force=True)
