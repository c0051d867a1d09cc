"""The files of a workspace as git sees them: tracked plus untracked-but-not-ignored.

Listing asks git once and then watches directory mtimes: adding, removing or renaming a file changes
its directory's mtime, so a listing stays valid until one of them moves. Editing a file in place does
not change the listing (its own stat is watched by whoever reads it)."""

from __future__ import annotations

import bisect
import os
import subprocess
import time
from pathlib import Path

# File system timestamps tick coarsely (a few ms): a change made within this window of a listing may
# leave the mtime unchanged, so such recent mtimes are re-checked the next time (git's "racily clean").
RACY_NS = 50_000_000

# Directories never worth walking when the root is not a git repository.
_SKIP_DIRS = {".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".tox", ".dsagent"}


def git(root: Path, *args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    """Run git in `root` and return stdout (surrogate-escaped so odd bytes survive)."""
    proc = subprocess.run(
        ["git", "-c", "core.quotepath=false", *args],
        cwd=root,
        capture_output=True,
        env={**os.environ, **env} if env else None,
    )
    if check and proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip() or f"exit {proc.returncode}"
        raise RuntimeError(f"git {' '.join(args)}: {message}")
    return proc.stdout.decode("utf-8", errors="surrogateescape")


def is_git_worktree(root: Path) -> bool:
    proc = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=root, capture_output=True, text=True)
    return proc.returncode == 0 and proc.stdout.strip() == "true"


def _walk(root: Path) -> list[str]:
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        rel = os.path.relpath(dirpath, root)
        for name in sorted(filenames):
            found.append(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/"))
    return found


class FileLister:
    """Cached listing of a workspace's files (posix paths relative to the root, sorted)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        self._base = str(self.root)  # plain strings: this is stat-ed thousands of times per refresh
        self.in_git = is_git_worktree(self.root)
        self._files: list[str] | None = None
        self._watched: list[tuple[str, int]] = []  # (absolute directory or .gitignore path, mtime_ns)
        self._listed_at = 0
        self.untracked: set[str] = set()  # in git: listed files git does not track (yet)

    def files(self, verify: bool = True) -> list[str]:
        """The listing; `verify=False` trusts the cached one unless it was invalidated."""
        if self._files is None or (verify and self._stale()):
            self._listed_at = time.time_ns()
            self._files = self._list()
            self._watch(self._files)
        return self._files

    def invalidate(self) -> None:
        self._files = None

    def note(self, rel: str) -> None:
        """`rel` was just written or removed by a tool: update the listing in place instead of
        listing everything again (a created file joins it unless git ignores it)."""
        if self._files is None:
            return
        exists = os.path.lexists(os.path.join(self._base, rel))
        at = bisect.bisect_left(self._files, rel)
        listed = at < len(self._files) and self._files[at] == rel
        if exists and not listed and not self._ignored(rel):
            self._files = [*self._files[:at], rel, *self._files[at:]]  # a new list: users compare identity
            self.untracked.add(rel)
        elif listed and not exists:
            self._files = self._files[:at] + self._files[at + 1 :]
        # The written directory's mtime moved on: a verifying caller will list again, which is right.

    def _ignored(self, rel: str) -> bool:
        if not self.in_git:
            return any(part in _SKIP_DIRS for part in rel.split("/")[:-1])
        proc = subprocess.run(["git", "check-ignore", "-q", "--", rel], cwd=self.root, capture_output=True)
        return proc.returncode == 0

    def _list(self) -> list[str]:
        if not self.in_git:
            return _walk(self.root)
        out = git(self.root, "ls-files", "-z", "-t", "--cached", "--others", "--exclude-standard")
        entries = [entry for entry in out.split("\0") if entry]  # "H path" tracked, "? path" untracked
        self.untracked = {entry[2:] for entry in entries if entry.startswith("?")}
        names = sorted({entry[2:] for entry in entries})
        # Tracked files deleted from the work tree are still in the index: drop them.
        return [name for name in names if os.path.lexists(self.root / name)]

    def _watch(self, files: list[str]) -> None:
        dirs = {""}
        for name in files:
            parent = os.path.dirname(name)
            while parent not in dirs:
                dirs.add(parent)
                parent = os.path.dirname(parent)
        paths = [os.path.join(self._base, d) if d else self._base for d in dirs]
        paths += [os.path.join(self._base, n) for n in files if n.endswith(".gitignore")]
        self._watched = [(path, _mtime(path)) for path in paths]

    def _stale(self) -> bool:
        racy = self._listed_at - RACY_NS
        for path, mtime in self._watched:  # a plain loop: this runs on every tool call
            if mtime >= racy or _mtime(path) != mtime:
                return True
        return False


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1
