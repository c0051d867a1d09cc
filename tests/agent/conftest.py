"""Fixtures of the agent tests: a real workspace with the real tools, and the tiny engine."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # agent_testkit, beside this file

from agent_testkit import commit_project, tiny_checkpoint  # noqa: E402

PROJECT = {
    "calc.py": "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n",
    "test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
}


@pytest.fixture
def project(git_repo: Path) -> Path:
    """A git repository with a small Python project (add() has a bug)."""
    return commit_project(git_repo, PROJECT)


@pytest.fixture
def workspace(project: Path):
    from dsagent.sandbox.workspace import Workspace

    with Workspace(project) as ws:
        yield ws


@pytest.fixture
def registry(workspace, tmp_path: Path):
    from dsagent.tools.registry import default_registry

    return default_registry(workspace.root, index_dir=tmp_path / "index")


@pytest.fixture(scope="session")
def tiny_ckpt(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(shared_dir / "parity" / "v32-tiny-bf16", tmp_path_factory.mktemp("tiny") / "ckpt")


@pytest.fixture(scope="session")
def tiny_engine(tiny_ckpt: Path):
    import torch
    from dsagent.model.engine import Engine

    return Engine.from_pretrained(tiny_ckpt, device="cpu", dtype=torch.float32, progress=False)


@pytest.fixture(scope="session")
def sandbox_image(docker_available: None) -> str:
    """The default sandbox image (built once when missing or out of date)."""
    from dsagent.config import SandboxSettings
    from dsagent.sandbox.daemon import connect
    from dsagent.sandbox.image import build_base_image

    settings = SandboxSettings()
    return build_base_image(connect(), settings.image, settings.base_image, progress=lambda line: None)
