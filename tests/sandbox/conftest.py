"""Sandbox fixtures: the image every sandbox test shares (built once when missing)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def sandbox_image(docker_available: None) -> str:
    """The default sandbox image; `dsagent sandbox build` normally made it before the tests."""
    from dsagent.config import SandboxSettings
    from dsagent.sandbox.daemon import connect
    from dsagent.sandbox.image import build_base_image

    settings = SandboxSettings()
    return build_base_image(connect(), settings.image, settings.base_image, progress=lambda line: None)


@pytest.fixture(scope="session")
def other_uid() -> int:
    """A uid that is not the host user's when the tests run as root (so ownership checks can fail)."""
    return 1000 if os.getuid() == 0 else os.getuid()
