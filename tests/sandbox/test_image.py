"""The sandbox image: the host's apt mirror, what the image holds, the cached rebuild, a missing daemon."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dsagent.sandbox.apt import debian_mirror, host_sources

DSAGENT = os.path.join(os.path.dirname(sys.executable), "dsagent")


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DSAGENT, *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_mirror_from_deb822_sources(tmp_path):
    write(
        tmp_path,
        "sources.list.d/debian.sources",
        """\
Types: deb
# a comment inside the stanza
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
""",
    )
    write(
        tmp_path,
        "sources.list.d/other.sources.disabled",
        "Types: deb\nURIs: http://wrong\nSuites: bookworm\nComponents: main\n",
    )
    assert debian_mirror("bookworm", tmp_path) == "http://mirror.example/debian"
    assert len(host_sources(tmp_path)) == 2


def test_mirror_from_one_line_lists_and_disabled_entries(tmp_path):
    write(
        tmp_path,
        "sources.list",
        """\
# deb http://commented.example/debian bookworm main
deb-src http://source.example/debian bookworm main
deb [arch=amd64 signed-by=/k.gpg] http://list.example/debian bookworm main non-free
""",
    )
    write(
        tmp_path,
        "sources.list.d/off.sources",
        "Enabled: no\nTypes: deb\nURIs: http://off\nSuites: bookworm\nComponents: main\n",
    )
    assert debian_mirror("bookworm", tmp_path) == "http://list.example/debian"
    assert debian_mirror("trixie", tmp_path) is None


@pytest.mark.docker
def test_image_holds_the_toolchain_and_no_setuid_binaries(sandbox_image):
    from dsagent.sandbox.daemon import connect
    from dsagent.sandbox.image import image_facts, is_current

    client = connect()
    assert is_current(client, sandbox_image)
    facts = image_facts(client, sandbox_image)
    assert facts is not None and facts.python.startswith("3.")
    script = (
        "command -v pytest && python3 -m pytest --version && python3 -m pip --version && git --version && "
        "python3 -m venv --without-pip /tmp/v && find / -xdev -perm /6000 -type f -printf 'setuid %p\\n'"
    )
    out = client.containers.run(
        sandbox_image, ["sh", "-c", script], remove=True, network_mode="none", stderr=True
    ).decode()
    assert out.startswith("/opt/venv/bin/pytest\n")  # the venv's, so it sees environment layers
    assert "pytest" in out and "pip" in out and "git version" in out
    assert "setuid " not in out, out


@pytest.mark.docker
def test_build_returns_at_once_when_up_to_date(sandbox_image):
    start = time.monotonic()
    done = cli("sandbox", "build")
    assert done.returncode == 0, done.stderr
    assert "is up to date" in done.stderr
    assert time.monotonic() - start < 60  # no debootstrap, no import: only a label check


def test_missing_daemon_is_one_line():
    done = cli("sandbox", "build", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert done.returncode == 3
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "no Docker daemon answers" in lines[0] and "start a Docker daemon" in lines[0]


@pytest.mark.docker
def test_doctor_requires_the_image(sandbox_image):
    from dsagent.config import Settings
    from dsagent.doctor import check_sandbox_image

    settings = Settings()
    assert check_sandbox_image(settings).ok
    settings.sandbox.image = "dsagent-no-such-image:never"
    missing = check_sandbox_image(settings)
    assert not missing.ok and missing.required and "dsagent sandbox build" in missing.fix
