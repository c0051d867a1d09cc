"""`dsagent fix` end to end on every example: real git, real Docker, real tools, the scripted backend.

Each example is delivered a different way (patch file only, --branch, --apply) so that one run per
example covers reproduction, verification, the headless stream and the user's tree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def tree_state(repo: Path) -> tuple[str, str, dict[str, bytes]]:
    """HEAD, `git status` and every file's bytes: what 'untouched' means."""
    files = {
        p.relative_to(repo).as_posix(): p.read_bytes()
        for p in repo.rglob("*")
        if p.is_file() and ".git" not in p.parts and ".dsagent" not in p.parts
    }
    return git(repo, "rev-parse", "HEAD").strip(), git(repo, "status", "--porcelain", "--untracked-files=all"), files


def host_pytest(repo: Path, *args: str) -> int:
    """The tests outside the sandbox, on the host's Python: an independent check of the patch."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=repo,
        capture_output=True,
        text=True,
    ).returncode


@pytest.fixture(scope="module")
def validator(dsagent_exe: str) -> jsonschema.Draft202012Validator:
    """The documented schema, as `dsagent fix --schema` prints it."""
    proc = subprocess.run([dsagent_exe, "fix", "--schema"], capture_output=True, text=True, check=True)
    return jsonschema.Draft202012Validator(json.loads(proc.stdout))


@pytest.mark.parametrize(("name", "deliver"), [("pagination", "apply"), ("shipping", "branch"), ("textstats", "patch")])
def test_fix_example(name, deliver, examples, example_repo, dsagent_fix, sandbox_image, validator, tmp_path) -> None:
    example = examples[name]
    repo = example_repo(name)
    before = tree_state(repo)
    patch = tmp_path / "fix.patch"
    extra = {"apply": ["--apply"], "branch": ["--branch", f"fix-{name}"], "patch": []}[deliver]
    run = dsagent_fix(
        example.target, "--repo", repo, "--model", f"scripted:{example.script}", "--headless", "--patch", patch, *extra
    )
    assert run.code == 0, run.stderr[-3000:]

    # The stream: every line is an event of the documented schema, in the documented order.
    for event in run.events:
        validator.validate(event)
    kinds = [event["type"] for event in run.events]
    assert kinds[0] == "fix_started" and kinds[-1] == "fix_finished"
    assert kinds.index("fix_reproduced") < kinds.index("session_started") < kinds.index("fix_verified")
    assert "verification: target passes" in run.stderr  # progress goes to stderr

    reproduced = run.one("fix_reproduced")
    assert reproduced["status"] == "failing"
    assert [t["test"] for t in reproduced["tests"]] == [example.target]
    assert reproduced["tests"][0]["outcome"] == "failed" and "assert" in reproduced["failure"]
    assert reproduced["neighbours"] >= 3

    verified = run.one("fix_verified")
    assert verified["rows"][0] == {
        "test": example.target,
        "target": True,
        "before": "failed",
        "after": "passed",
        "status": "fixed",
    }
    neighbours = verified["rows"][1:]
    assert len(neighbours) == reproduced["neighbours"] and all(row["status"] == "ok" for row in neighbours)
    assert verified["regressions"] == [] and verified["contract"] == []

    finished = run.one("fix_finished")
    assert (finished["outcome"], finished["exit_code"], finished["patch_path"]) == ("fixed", 0, str(patch))
    assert finished["summary"] == run.one("turn_finished")["summary"] != ""
    diff = patch.read_text()
    assert diff == run.one("patch")["diff"] and "tests/" not in diff and diff.startswith("diff --git")

    if deliver == "apply":
        assert git(repo, "rev-parse", "HEAD").strip() == before[0]
        assert git(repo, "status", "--porcelain") == f" M {run.one('patch')['files'][0]}\n"
        assert finished["applied"] and host_pytest(repo, "tests") == 0
        return
    assert tree_state(repo) == before  # the user's tree is untouched
    assert host_pytest(repo, example.target) == 1  # and still fails there
    checkout = tmp_path / "checkout"
    if deliver == "branch":
        commit = finished["commit"]
        assert git(repo, "rev-parse", f"fix-{name}").strip() == commit
        assert git(repo, "rev-parse", f"{commit}^").strip() == before[0]
        assert git(repo, "diff", "--binary", "--full-index", before[0], commit) == diff
        assert example.target.split("::")[1] in git(repo, "log", "-1", "--format=%B", commit)
        git(repo, "worktree", "add", "-q", str(checkout), f"fix-{name}")
    else:
        git(repo, "worktree", "add", "-q", "--detach", str(checkout), "HEAD")
        git(checkout, "apply", str(patch))
    assert host_pytest(checkout, example.target.split("::")[0]) == 0  # the patch alone fixes the target
