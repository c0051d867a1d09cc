"""Fixtures for `dsagent fix` tests: example repositories, scripted sessions, the CLI as a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dsagent.agent.fix_demo import Example, load_examples, prepare_example


@pytest.fixture(scope="session")
def examples() -> dict[str, Example]:
    return load_examples()


@pytest.fixture
def example_repo(tmp_path: Path, examples: dict[str, Example]) -> Callable[[str], Path]:
    """A fresh git repository holding a copy of examples/<name> (without its script)."""

    def make(name: str) -> Path:
        return prepare_example(examples[name], tmp_path / name)

    return make


@pytest.fixture
def write_script(tmp_path: Path) -> Callable[..., Path]:
    """A scripted session from (tool name, arguments) pairs, one assistant message each."""

    def write(*calls: tuple[str, dict[str, Any]], name: str = "script.jsonl") -> Path:
        lines = []
        for number, (tool, arguments) in enumerate(calls, start=1):
            call = {
                "id": f"call_{number}",
                "type": "function",
                "function": {"name": tool, "arguments": json.dumps(arguments)},
            }
            lines.append(
                json.dumps(
                    {"role": "assistant", "reasoning_content": f"step {number}", "content": "", "tool_calls": [call]}
                )
            )
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n")
        return path

    return write


@pytest.fixture(scope="session")
def sandbox_image(docker_available: None) -> str:
    """The sandbox image every fix test shares (built once by `dsagent sandbox build` when missing)."""
    from dsagent.config import load_settings
    from dsagent.sandbox.daemon import connect, image_exists

    image = load_settings().settings.sandbox.image
    if not image_exists(connect(), image):
        subprocess.run([_dsagent(), "sandbox", "build"], check=True, timeout=1800)
    return image


def _dsagent() -> str:
    return shutil.which("dsagent") or str(Path(sys.executable).parent / "dsagent")


@pytest.fixture(scope="session")
def dsagent_exe() -> str:
    """The installed `dsagent` entry point."""
    return _dsagent()


class FixRun:
    def __init__(self, proc: subprocess.CompletedProcess) -> None:
        self.proc = proc
        self.code = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.of(kind)
        assert len(found) == 1, (kind, self.stdout[-3000:], self.stderr[-3000:])
        return found[0]


@pytest.fixture
def dsagent_fix() -> Callable[..., FixRun]:
    """Run the installed `dsagent fix` with arguments; CI is unset so --headless decides the mode."""

    def run(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 300) -> FixRun:
        full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
        full_env.pop("CI", None) if "CI" not in (env or {}) else None
        proc = subprocess.run(
            [_dsagent(), "fix", *map(str, args)], capture_output=True, text=True, env=full_env, timeout=timeout
        )
        return FixRun(proc)

    return run
