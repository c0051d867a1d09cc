"""Property: whatever state the user's repository is in, the workspace starts from it, never changes
it before `apply_to_user_tree()`, and applying keeps the user's uncommitted work and adds the agent's."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from dsagent.sandbox.workspace import Workspace
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TEXT_FILES = ["a.py", "b.txt", "pkg/c.py", "pkg/d.md"]
BINARY_FILE = "img.bin"
SCRIPT = "run.sh"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True).stdout.decode()


def files_of(root: Path) -> dict[str, tuple[bytes, bool]]:
    """Path -> (bytes, executable) for every file outside .git."""
    found = {}
    for dirpath, dirnames, names in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in names:
            if name == ".git":  # a worktree's link to its git dir
                continue
            path = Path(dirpath, name)
            found[path.relative_to(root).as_posix()] = (path.read_bytes(), bool(os.stat(path).st_mode & 0o111))
    return found


def make_repo(base: Path) -> Path:
    repo = base / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "dev@example.com")
    git(repo, "config", "user.name", "Dev")
    for i, rel in enumerate(TEXT_FILES):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("".join(f"{rel} line {n}\n" for n in range(1, 6 + i)))
    (repo / BINARY_FILE).write_bytes(bytes(range(200)) * 3)
    (repo / SCRIPT).write_text("#!/bin/sh\necho hi\n")
    os.chmod(repo / SCRIPT, 0o755)
    (repo / ".gitignore").write_text("*.log\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    return repo


user_ops = st.lists(
    st.tuples(
        st.sampled_from(["modify", "delete", "rename", "binary", "chmod", "untracked", "ignored", "new_staged"]),
        st.integers(0, 100),
        st.booleans(),  # staged?
    ),
    max_size=6,
)


def apply_user_op(repo: Path, op: str, pick: int, staged: bool, n: int) -> None:
    present = sorted(p for p in files_of(repo) if p not in (".gitignore",) and not p.endswith(".log"))
    target = present[pick % len(present)] if present else None
    if op == "modify" and target:
        with open(repo / target, "ab") as handle:
            handle.write(f"user edit {n}\n".encode())
    elif op == "delete" and target:
        (repo / target).unlink()
    elif op == "rename" and target:
        (repo / target).rename(repo / f"renamed_{n}_{Path(target).name}")
    elif op == "binary":
        (repo / f"blob{n}.bin").write_bytes(bytes([n, 0, 255, 10, 13]) * 20)
    elif op == "chmod" and target:
        mode = os.stat(repo / target).st_mode
        os.chmod(repo / target, mode ^ 0o111)
    elif op == "untracked":
        (repo / f"untracked{n}.txt").write_text(f"mine {n}\n")
    elif op == "ignored":
        (repo / f"debug{n}.log").write_text("ignored\n")
    elif op == "new_staged":
        (repo / f"staged{n}.py").write_text(f"x = {n}\n")
    if staged and op != "ignored":
        git(repo, "add", "-A")


agent_ops = st.lists(
    st.tuples(st.sampled_from(["edit", "create", "delete", "binary", "chmod"]), st.integers(0, 100)),
    min_size=1,
    max_size=4,
)


def apply_agent_op(root: Path, op: str, pick: int, n: int) -> None:
    present = sorted(files_of(root))
    target = present[pick % len(present)] if present else None
    if op == "edit" and target:
        data = (root / target).read_bytes()
        (root / target).write_bytes(f"agent {n}\n".encode() + data)
    elif op == "create":
        (root / "agent" / f"new{n}.py").parent.mkdir(exist_ok=True)
        (root / "agent" / f"new{n}.py").write_text(f"def made_{n}():\n    return {n}\n")
    elif op == "delete" and target and target != ".gitignore":
        (root / target).unlink()
    elif op == "binary":
        (root / f"agent{n}.bin").write_bytes(bytes(range(n, n + 50)) + b"\x00\xff")
    elif op == "chmod" and target:
        os.chmod(root / target, os.stat(root / target).st_mode ^ 0o111)


def user_view(repo: Path) -> dict:
    return {"files": files_of(repo), "index": git(repo, "ls-files", "-s"), "refs": git(repo, "show-ref", "--head")}


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(user=user_ops, agent=agent_ops)
def test_workspace_never_harms_the_users_work(user, agent) -> None:
    with tempfile.TemporaryDirectory(prefix="ws-prop-") as tmp:
        repo = make_repo(Path(tmp))
        for n, (op, pick, staged) in enumerate(user):
            apply_user_op(repo, op, pick, staged, n)
        before = user_view(repo)
        not_ignored = {p: v for p, v in before["files"].items() if not p.endswith(".log")}

        with Workspace(repo, parent_dir=tmp) as ws:
            assert files_of(ws.root) == not_ignored  # starts from exactly the user's state
            for n, (op, pick) in enumerate(agent):
                apply_agent_op(ws.root, op, pick, n)
            agent_result = files_of(ws.root)
            ws.patch_bytes()
            assert user_view(repo) == before  # byte-identical until apply is called

            result = ws.apply_to_user_tree()
            assert result.applied, result.message

        after = user_view(repo)
        ignored = {p: v for p, v in before["files"].items() if p.endswith(".log")}
        assert after["files"] == {**agent_result, **ignored}  # the agent's change over the user's work
        assert after["index"] == before["index"]  # what the user staged is untouched
        assert after["refs"] == before["refs"]
        assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
