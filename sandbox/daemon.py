"""Reaching the Docker daemon, with one line that says how to start one when it does not answer."""

from __future__ import annotations

import os
from typing import Any

from dsagent.sandbox.base import DOCKER_FIX, SandboxError


def connect(timeout: float = 120.0) -> Any:
    """A docker SDK client whose daemon has answered a ping."""
    try:
        import docker

        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception:  # any failure to reach the daemon means the same fix
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        raise SandboxError(f"no Docker daemon answers at {where}; {DOCKER_FIX}") from None
    return client


def image_exists(client: Any, tag: str) -> bool:
    import docker.errors

    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True
