"""The test contract on real patches from a real git workspace and the real file tools."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from dsagent.agent.fix_contract import TestContract, is_test_file, parse_diff
from dsagent.agent.fix_tools import ContractGuard, guard_registry
from dsagent.sandbox.workspace import Workspace
from dsagent.tools.registry import default_registry

SOURCE = "def double(x):\n    return x + x\n"
TEST = "from pkg.core import double\n\n\ndef test_double():\n    assert double(2) == 4\n    assert double(0) == 0\n"


@pytest.fixture
def repo(git_repo: Path) -> Path:
    (git_repo / "pkg").mkdir()
    (git_repo / "pkg" / "core.py").write_text(SOURCE)
    (git_repo / "tests").mkdir()
    (git_repo / "tests" / "test_core.py").write_text(TEST)
    (git_repo / "tests" / "conftest.py").write_text("")
    (git_repo / "pyproject.toml").write_text(
        '[project]\nname = "pkg"\n\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\n'
    )
    subprocess.run(["git", "add", "-A"], cwd=git_repo, check=True)
    subprocess.run(["git", "commit", "-qm", "code"], cwd=git_repo, check=True)
    return git_repo


@pytest.fixture
def workspace(repo: Path):
    with Workspace(repo) as ws:
        yield ws


def guarded(workspace: Workspace, allow: bool = False, finish_problem: str | None = None):
    contract = TestContract(workspace.root, ["tests/test_core.py"], allow)
    registry = default_registry(workspace.root, index_dir=workspace.index_dir)
    guard = ContractGuard(contract, workspace, on_finish=lambda: finish_problem)
    return guard_registry(registry, guard), guard


def test_protected_files(workspace: Workspace) -> None:
    contract = TestContract(workspace.root, ["tests/test_core.py"])
    assert "defines the failing test" in contract.protected_reason("tests/test_core.py")
    assert "conftest.py" in contract.protected_reason("tests/conftest.py")
    assert "conftest.py" in contract.protected_reason("other/deep/conftest.py")  # new ones too
    assert "test configuration" in contract.protected_reason("pyproject.toml")
    assert contract.protected_reason("pkg/core.py") is None
    assert (
        TestContract(workspace.root, ["tests/test_core.py"], allow_test_edits=True).protected_reason(
            "tests/test_core.py"
        )
        is None
    )


def test_edit_of_the_test_file_is_refused(workspace: Workspace) -> None:
    registry, _ = guarded(workspace)
    result = registry.call("edit_file", {"path": "tests/test_core.py", "old_string": "== 4", "new_string": "== 5"})
    assert not result.ok
    assert "read-only" in result.text and "--allow-test-edits" in result.text
    assert (workspace.root / "tests/test_core.py").read_text() == TEST
    result = registry.call("write_file", {"path": "tests/sub/conftest.py", "content": "import pytest\n"})
    assert not result.ok and not (workspace.root / "tests/sub/conftest.py").exists()


def test_edit_of_the_test_file_is_allowed_when_the_user_says_so(workspace: Workspace) -> None:
    registry, _ = guarded(workspace, allow=True)
    result = registry.call(
        "edit_file", {"path": "tests/test_core.py", "old_string": "double(0) == 0", "new_string": "double(1) == 2"}
    )
    assert result.ok, result.text
    assert "double(1) == 2" in (workspace.root / "tests/test_core.py").read_text()


def test_adding_a_skip_is_rejected_and_undone(workspace: Workspace) -> None:
    registry, guard = guarded(workspace, allow=True)
    result = registry.call(
        "edit_file",
        {
            "path": "tests/test_core.py",
            "old_string": "def test_double():",
            "new_string": "@pytest.mark.skip(reason='later')\ndef test_double():",
        },
    )
    assert not result.ok
    assert "adds a skip/xfail" in result.text and "undone" in result.text
    assert (workspace.root / "tests/test_core.py").read_text() == TEST
    assert workspace.patch() == ""
    assert guard.reverted and guard.reverted[0].rule == "skip"


def test_skip_in_the_code_under_test_is_rejected(workspace: Workspace) -> None:
    registry, _ = guarded(workspace)
    result = registry.call(
        "edit_file",
        {
            "path": "pkg/core.py",
            "old_string": "    return x + x\n",
            "new_string": "    import pytest\n    pytest.skip('broken')\n",
        },
    )
    assert not result.ok and "pytest.skip" in result.text
    assert (workspace.root / "pkg/core.py").read_text() == SOURCE


def test_deleting_assertions_is_rejected(workspace: Workspace) -> None:
    registry, _ = guarded(workspace, allow=True)
    result = registry.call(
        "edit_file", {"path": "tests/test_core.py", "old_string": "    assert double(0) == 0\n", "new_string": ""}
    )
    assert not result.ok and "deletes 1 assertion" in result.text
    assert (workspace.root / "tests/test_core.py").read_text() == TEST


def test_a_fix_of_the_code_passes_and_finish_asks_the_verifier(workspace: Workspace) -> None:
    registry, _ = guarded(workspace, finish_problem="the target still fails: tests/test_core.py::test_double")
    result = registry.call("edit_file", {"path": "pkg/core.py", "old_string": "x + x", "new_string": "2 * x"})
    assert result.ok, result.text
    refused = registry.call("finish", {"summary": "done"})
    assert not refused.ok and "the target still fails" in refused.text
    accepted, _ = guarded(workspace)
    assert accepted.call("finish", {"summary": "done"}).ok


def test_finish_is_refused_while_the_patch_breaks_the_contract(workspace: Workspace) -> None:
    registry, _ = guarded(workspace)
    # A change made behind the tools' back (as a shell command would) still counts at finish.
    (workspace.root / "pkg/core.py").write_text(SOURCE + "import pytest\npytestmark = pytest.mark.skip\n")
    result = registry.call("finish", {"summary": "done"})
    assert not result.ok and "pytestmark" in result.text


def test_parse_diff_line_numbers() -> None:
    diff = (
        "diff --git a/t/test_a.py b/t/test_a.py\n--- a/t/test_a.py\n+++ b/t/test_a.py\n"
        "@@ -1,3 +1,3 @@\n def test():\n-    assert f() == 1\n+    assert f() == 2\n     pass\n"
        "@@ -10,2 +10,3 @@\n x = 1\n+@pytest.mark.xfail\n y = 2\n"
    )
    [file] = parse_diff(diff)
    assert file.path == "t/test_a.py"
    assert file.added == [(2, "    assert f() == 2"), (11, "@pytest.mark.xfail")]
    assert file.removed == ["    assert f() == 1"]
    found = TestContract(Path("/nonexistent"), [], allow_test_edits=True).check_patch(diff)
    assert [(v.rule, v.line) for v in found] == [("skip", 11)]  # a changed assertion is not a deleted one


def test_is_test_file() -> None:
    assert is_test_file("tests/helpers.py") and is_test_file("pkg/test_x.py") and is_test_file("x_test.py")
    assert not is_test_file("pkg/core.py")
