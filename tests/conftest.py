"""Shared fixtures. Tests marked `docker` need a daemon: they skip without one on a laptop and fail
in CI (CI=true), where a skipped security test would prove nothing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _daemon_error() -> str | None:
    try:
        from dsagent.doctor import docker_client

        docker_client(timeout=5).close()
    except Exception as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


@pytest.fixture(scope="session")
def docker_available() -> None:
    error = _daemon_error()
    if error is None:
        return
    message = f"no Docker daemon answers ({error}); run scripts/ensure-docker"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _require_docker(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("docker"):
        request.getfixturevalue("docker_available")


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A real git repository with one commit."""
    repo = tmp_path / "repo"
    repo.mkdir()
    run = lambda *args: subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    run("init", "-q", "-b", "main")
    run("config", "user.email", "dev@example.com")
    run("config", "user.name", "Dev")
    (repo / "README.md").write_text("hello\n")
    run("add", "-A")
    run("commit", "-q", "-m", "init")
    return repo


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the checkout: parity checkpoints and DSML fixtures. Never skipped."""
    assert SHARED.is_dir(), f"{SHARED} is missing: the parity and DSML fixtures live there"
    return SHARED
