"""`dsagent tool`, `dsagent index` and `dsagent map` through the real typer app."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from dsagent.cli import app
from typer.testing import CliRunner


@pytest.fixture
def repo(git_repo: Path) -> Path:
    (git_repo / "calc.py").write_text("def add(a, b):\n    return a + b\n\n\ndef twice(x):\n    return add(x, x)\n")
    subprocess.run(["git", "add", "-A"], cwd=git_repo, check=True)
    subprocess.run(["git", "commit", "-qm", "calc"], cwd=git_repo, check=True)
    return git_repo


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_tool_prints_the_result_and_exits_1_on_error(repo: Path) -> None:
    ok = run("tool", "read_file", '{"path": "calc.py", "end_line": 2}', "--repo", str(repo))
    assert ok.exit_code == 0, ok.output
    assert "     1\tdef add(a, b):" in ok.output
    refused = run("tool", "read_file", '{"path": "../../etc/passwd"}', "--repo", str(repo))
    assert refused.exit_code == 1 and "outside the workspace" in refused.output
    unknown = run("tool", "nope", "{}", "--repo", str(repo))
    assert unknown.exit_code == 1 and "unknown tool" in unknown.output
    bad_json = run("tool", "read_file", "{path:", "--repo", str(repo))
    assert bad_json.exit_code == 2 and "not valid JSON" in bad_json.output
    as_json = run("tool", "search_code", '{"query": "add"}', "--repo", str(repo), "--json")
    data = json.loads(as_json.output)
    assert data["ok"] and data["data"]["matches"][0]["line"] == 1


def test_changing_tools_run_in_a_workspace_and_apply_only_when_asked(repo: Path) -> None:
    args = '{"path": "calc.py", "old_string": "a + b", "new_string": "b + a"}'
    dry = run("tool", "edit_file", args, "--repo", str(repo))
    assert dry.exit_code == 0, dry.output
    assert "+    return b + a" in dry.output and "--apply" in dry.output
    assert "a + b" in (repo / "calc.py").read_text()
    applied = run("tool", "edit_file", args, "--repo", str(repo), "--apply")
    assert applied.exit_code == 0, applied.output
    assert "b + a" in (repo / "calc.py").read_text()
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=repo, capture_output=True, text=True).stdout
    assert len(worktrees.splitlines()) == 1
    failed = run("tool", "edit_file", args, "--repo", str(repo))  # "a + b" is gone now
    assert failed.exit_code == 1 and "old_string was not found in calc.py" in failed.output


def test_index_and_map(repo: Path) -> None:
    built = run("index", str(repo))
    assert built.exit_code == 0, built.output
    assert "indexed 1 files" in built.output and "1 parsed" in built.output and "2 definitions" in built.output
    again = run("index", str(repo))
    assert "0 parsed, 0 from the store" in again.output or "1 from the store" in again.output
    shown = run("map", str(repo), "--tokens", "200")
    assert shown.exit_code == 0
    assert shown.output.startswith("calc.py:\n") and "     5: def twice(x):" in shown.output
