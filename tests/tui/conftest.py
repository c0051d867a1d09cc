"""Fixtures of the TUI tests: a small real project in a git repository and a scripted session for it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tui_kit, beside this file

from tui_kit import CALC, TEST_CALC, commit_project  # noqa: E402


@pytest.fixture
def project(git_repo: Path) -> Path:
    """A git repository with calc.py (add() subtracts) and its test."""
    return commit_project(git_repo, {"calc.py": CALC, "test_calc.py": TEST_CALC})


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (marked anyio) run on asyncio, Textual's event loop."""
    return "asyncio"
