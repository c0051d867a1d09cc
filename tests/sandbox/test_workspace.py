"""The isolated git workspace: starts from the user's state, never touches it, hands changes back safely."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest
from dsagent.sandbox.workspace import Workspace, WorkspaceError


def git(repo: Path, *args: str, input: bytes | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, input=input)
    return proc.stdout.decode()


def user_state(repo: Path) -> dict:
    """Everything of the user's that a workspace must not change: files (bytes, exec bit), index, refs."""
    files = {}
    for dirpath, dirnames, names in os.walk(repo):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in names:
            path = Path(dirpath, name)
            files[path.relative_to(repo).as_posix()] = (path.read_bytes(), os.stat(path).st_mode & 0o111 != 0)
    return {
        "files": files,
        "index": git(repo, "ls-files", "-s"),
        "refs": git(repo, "for-each-ref"),
        "head": git(repo, "symbolic-ref", "-q", "HEAD"),
        "worktrees": git(repo, "worktree", "list", "--porcelain").count("worktree "),
    }


@pytest.fixture
def repo(git_repo: Path) -> Path:
    (git_repo / "app.py").write_text("def f():\n    return 1\n\n\ndef g():\n    return 2\n")
    (git_repo / "logo.bin").write_bytes(bytes(range(256)))
    (git_repo / ".gitignore").write_text("*.log\n")
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "base")
    # Uncommitted work of every kind.
    (git_repo / "app.py").write_text("def f():\n    return 1\n\n\ndef g():\n    return 2  # staged\n")
    git(git_repo, "add", "app.py")
    (git_repo / "README.md").write_text("hello, unstaged\n")
    (git_repo / "notes.txt").write_text("untracked\n")
    (git_repo / "debug.log").write_text("ignored\n")
    return git_repo


def test_starts_from_the_users_state_and_leaves_it_alone(repo: Path) -> None:
    before = user_state(repo)
    with Workspace(repo) as ws:
        assert ws.root.parent != repo and repo not in ws.root.parents
        assert (ws.root / "app.py").read_text().endswith("return 2  # staged\n")
        assert (ws.root / "README.md").read_text() == "hello, unstaged\n"
        assert (ws.root / "notes.txt").read_text() == "untracked\n"
        assert not (ws.root / "debug.log").exists()  # ignored files stay behind
        assert ws.patch() == "" and ws.changed_files() == []
        (ws.root / "app.py").write_text("changed\n")
        (ws.root / "notes.txt").unlink()
        assert ws.changed_files() == ["app.py", "notes.txt"]
        assert user_state(repo) == {**before, "worktrees": 2}
    assert user_state(repo) == before


def test_patch_is_binary_safe_and_applies_to_the_users_state(repo: Path, tmp_path: Path) -> None:
    with Workspace(repo) as ws:
        (ws.root / "logo.bin").write_bytes(bytes(reversed(range(256))) + b"\x00tail")
        (ws.root / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
        (ws.root / "run.sh").write_text("#!/bin/sh\n")
        os.chmod(ws.root / "run.sh", 0o755)
        patch = ws.patch_bytes()
        assert ws.patch().encode("utf-8", "surrogateescape") == patch
        assert b"GIT binary patch" in patch and b"new file mode 100755" in patch
        # The patch applies to a copy of the user's starting state and reproduces the workspace exactly.
        copy = tmp_path / "copy"
        git(tmp_path, "clone", "-q", str(repo), str(copy))
        git(copy, "read-tree", "--reset", "-u", ws.base_commit)
        git(copy, "apply", "--binary", "-", input=patch)
        for name in ("logo.bin", "latin1.txt", "run.sh", "app.py", "notes.txt"):
            assert (copy / name).read_bytes() == (ws.root / name).read_bytes(), name
        assert os.stat(copy / "run.sh").st_mode & 0o111


def test_apply_merges_with_what_the_user_changed_meanwhile(repo: Path) -> None:
    with Workspace(repo) as ws:
        text = (ws.root / "app.py").read_text().replace("return 1", "return 100")
        (ws.root / "app.py").write_text(text)
        (ws.root / "new.py").write_text("x = 1\n")
        # Meanwhile the user edits other lines of the same file, and another file.
        (repo / "app.py").write_text((repo / "app.py").read_text().replace("return 2", "return 200"))
        (repo / "README.md").write_text("user again\n")
        staged = git(repo, "ls-files", "-s")
        result = ws.apply_to_user_tree()
        assert result.applied, result.message
        assert result.files == ["app.py", "new.py"] and result.conflicts == []
    assert (repo / "app.py").read_text() == "def f():\n    return 100\n\n\ndef g():\n    return 200  # staged\n"
    assert (repo / "new.py").read_text() == "x = 1\n"
    assert (repo / "README.md").read_text() == "user again\n"
    assert git(repo, "ls-files", "-s") == staged  # what the user staged is still staged, nothing more


def test_apply_with_a_conflict_changes_nothing(repo: Path) -> None:
    with Workspace(repo) as ws:
        (ws.root / "app.py").write_text((ws.root / "app.py").read_text().replace("return 1", "return 'agent'"))
        (ws.root / "other.py").write_text("y = 2\n")
        (repo / "app.py").write_text((repo / "app.py").read_text().replace("return 1", "return 'user'"))
        before = user_state(repo)
        result = ws.apply_to_user_tree()
        assert not result.applied
        assert result.conflicts == ["app.py"]
        assert "same lines" in result.message and "app.py" in result.message
        assert user_state(repo) == before
        assert not (repo / "other.py").exists()


def test_apply_never_overwrites_a_file_the_user_created_meanwhile(repo: Path) -> None:
    with Workspace(repo) as ws:
        (ws.root / "keep.txt").write_text("agent\n")
        (repo / "keep.txt").write_text("user's own, untracked\n")
        before = user_state(repo)
        result = ws.apply_to_user_tree()
        assert not result.applied and result.conflicts == ["keep.txt"]
        assert user_state(repo) == before


def test_commit_to_branch_keeps_the_users_checkout(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    with Workspace(repo) as ws:
        (ws.root / "logo.bin").write_bytes(b"\x00new")
        before = user_state(repo)
        commit = ws.commit_to_branch("agent/fix")
        after = user_state(repo)
        assert after["files"] == before["files"] and after["index"] == before["index"]
        assert after["head"] == before["head"] == "refs/heads/main\n"
        # The change was separable from the uncommitted work: one commit on HEAD with only the change.
        assert git(repo, "rev-parse", f"{commit}^").strip() == head
        assert git(repo, "diff", "--name-only", head, commit) == "logo.bin\n"
        assert git(repo, "rev-parse", "agent/fix").strip() == commit
        with pytest.raises(WorkspaceError, match="already exists"):
            ws.commit_to_branch("agent/fix")
        with pytest.raises(WorkspaceError, match="not a valid branch name"):
            ws.commit_to_branch("bad..name")


def test_commit_to_branch_carries_uncommitted_work_it_builds_on(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    with Workspace(repo) as ws:
        (ws.root / "README.md").write_text("hello, unstaged\nand the agent's line\n")
        commit = ws.commit_to_branch("agent/wip")
    wip = git(repo, "rev-parse", f"{commit}^").strip()
    assert git(repo, "rev-parse", f"{wip}^").strip() == head
    assert git(repo, "show", f"{commit}:README.md") == "hello, unstaged\nand the agent's line\n"
    assert git(repo, "diff", "--name-only", wip, commit) == "README.md\n"


def test_no_changes_and_no_repository(repo: Path, tmp_path: Path) -> None:
    with Workspace(repo) as ws:
        assert ws.apply_to_user_tree().message == "the workspace has no changes"
        with pytest.raises(WorkspaceError, match="no changes"):
            ws.commit_to_branch("agent/empty")
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(WorkspaceError, match="not inside a git work tree"):
        Workspace(plain)


def test_repository_without_commits(tmp_path: Path) -> None:
    repo = tmp_path / "fresh"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "a.txt").write_text("a\n")
    with Workspace(repo) as ws:
        (ws.root / "a.txt").write_text("b\n")
        assert ws.apply_to_user_tree().applied
        commit = ws.commit_to_branch("agent/first")
    assert (repo / "a.txt").read_text() == "b\n"
    assert git(repo, "show", f"{commit}:a.txt") == "b\n"
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_cleanup_leaves_no_worktree_ref_or_directory(repo: Path) -> None:
    refs = git(repo, "for-each-ref")
    ws = Workspace(repo)
    root = ws.root
    (root / "x.txt").write_text("x\n")
    ws.patch()
    ws.apply_to_user_tree()
    ws.cleanup()
    ws.cleanup()  # twice is harmless
    assert not root.exists() and not root.parent.exists()
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert git(repo, "for-each-ref") == refs
    worktrees = repo / ".git" / "worktrees"
    assert not worktrees.exists() or os.listdir(worktrees) == []


def test_tools_work_in_the_workspace_and_keep_their_index_in_the_users_repo(repo: Path) -> None:
    from dsagent.tools.registry import workspace_registry

    before = user_state(repo)
    status = git(repo, "status", "--porcelain", "--untracked-files=all")
    with Workspace(repo) as ws:
        registry = workspace_registry(ws)
        edit = registry.call("edit_file", {"path": "app.py", "old_string": "def g():", "new_string": "def h():"})
        assert edit.ok, edit.text
        assert registry.call("search_code", {"query": "h"}).data["matches"][0]["path"] == "app.py"
        assert registry.call("read_file", {"path": ".git"}).ok is False
        assert "-def g():\n+def h():" in ws.patch()
        assert (repo / ".dsagent" / "index" / "symbols.sqlite").exists()
        registry.context.close()
    after = user_state(repo)
    # The only addition is the self-ignoring cache directory, which git does not see.
    assert {k: v for k, v in after["files"].items() if not k.startswith(".dsagent/")} == before["files"]
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == status


def _age(tree: Path, name: str) -> None:
    """Date `name` a minute back, so an index written from now on records it as clean."""
    old = os.stat(tree / name).st_mtime_ns - 60 * 10**9
    os.utime(tree / name, ns=(old, old))


def _racy_same_size_edit(tree: Path, index: Path, name: str, new_text: str) -> None:
    """Edit `name` in place (same size, same inode, same mtime) and give the index that mtime too, as
    when git writes its index and the file changes within the same second: only the content differs."""
    path = tree / name
    assert len(new_text) == len(path.read_text())
    stamp = os.stat(path).st_mtime_ns
    with open(path, "r+") as handle:
        handle.write(new_text)
    os.utime(path, ns=(stamp, stamp))
    os.utime(index, ns=(stamp, stamp))


def test_same_size_edits_in_the_second_of_the_index_are_seen(git_repo: Path) -> None:
    git(git_repo, "config", "core.trustctime", "false")  # the edit's ctime must not give it away
    (git_repo / "calc.py").write_text("return a + b\n")
    git(git_repo, "add", "calc.py")
    git(git_repo, "commit", "-q", "-m", "calc")
    _age(git_repo, "calc.py")
    git(git_repo, "update-index", "--refresh")
    _racy_same_size_edit(git_repo, git_repo / ".git" / "index", "calc.py", "return b + a\n")
    assert git(git_repo, "diff-files", "--name-only").strip() == "calc.py"  # git sees it (and keeps its index)
    with Workspace(git_repo) as ws:
        assert (ws.root / "calc.py").read_text() == "return b + a\n"
        _age(ws.root, "calc.py")
        assert ws.changed_files() == []  # the workspace's snapshot index now records calc.py as clean
        _racy_same_size_edit(ws.root, ws._own_index, "calc.py", "return a * b\n")
        assert ws.changed_files() == ["calc.py"]
        assert "+return a * b" in ws.patch()


def test_snapshots_from_two_threads_at_once(repo: Path) -> None:
    """The TUI reads the patch while the agent's tools snapshot the workspace: they share one index file."""
    errors: list[Exception] = []
    with Workspace(repo) as ws:
        (ws.root / "app.py").write_text("changed\n")

        def read_patches() -> None:
            try:
                for _ in range(15):
                    assert "+changed" in ws.patch()
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=read_patches) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
