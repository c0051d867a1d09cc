"""Make a git worktree usable inside the container.

A linked worktree's `.git` is a file naming its git dir on the host (`gitdir: /repo/.git/worktrees/x`),
which holds the worktree's index and HEAD while objects and refs live in the common dir (`/repo/.git`).
Both are mounted at their host paths: the common dir read-only (so nothing in the container can plant
hooks or rewrite refs of the user's repository), the worktree's own git dir read-write (git status
refreshes its index there).
"""

from __future__ import annotations

from pathlib import Path


def git_mounts(workspace: Path) -> dict[str, dict[str, str]]:
    dot_git = workspace / ".git"
    if not dot_git.is_file():
        return {}
    text = dot_git.read_text(errors="replace").strip()
    if not text.startswith("gitdir:"):
        return {}
    gitdir = Path(text.split(":", 1)[1].strip())
    if not gitdir.is_absolute():
        gitdir = (workspace / gitdir).resolve()
    if not gitdir.is_dir():
        return {}
    mounts = {str(gitdir): {"bind": str(gitdir), "mode": "rw"}}
    commondir_file = gitdir / "commondir"
    if commondir_file.is_file():
        common = (gitdir / commondir_file.read_text().strip()).resolve()
        if common.is_dir() and common != gitdir:
            mounts[str(common)] = {"bind": str(common), "mode": "ro"}
    return mounts
