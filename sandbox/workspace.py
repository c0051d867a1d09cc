"""The isolated git workspace: the agent edits a worktree, never the user's files.

The workspace starts from the user's current state, not from HEAD: staged, unstaged and untracked
(not ignored) files are snapshotted through a throwaway index into a tree, committed as a dangling
base commit and checked out as a detached worktree in a temporary directory. The user's index,
working tree and refs are never touched; only git objects are added.

`patch()` is the binary diff from that base to the worktree now. `apply_to_user_tree()` merges it
into whatever the user has by then (a three-way tree merge; on any conflict nothing is changed).
`commit_to_branch(name)` commits it on a new branch without switching the user's checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from dsagent.words import counted

# Our own commits need an identity even where the user never configured one.
_IDENTITY = {
    "GIT_AUTHOR_NAME": "dsagent",
    "GIT_AUTHOR_EMAIL": "dsagent@localhost",
    "GIT_COMMITTER_NAME": "dsagent",
    "GIT_COMMITTER_EMAIL": "dsagent@localhost",
}
# Plain, predictable git: no hooks, no pagers, no diff drivers, prefixes that `git apply` expects.
_CONFIG = [
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.quotepath=false",
    "-c",
    "diff.noprefix=false",
    "-c",
    "diff.mnemonicPrefix=false",
    "-c",
    "advice.detachedHead=false",
]
_DIFF = [
    "--binary",
    "--full-index",
    "--no-renames",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--src-prefix=a/",
    "--dst-prefix=b/",
]


class WorkspaceError(Exception):
    """A workspace operation failed; the message says what to do."""


@dataclass
class ApplyResult:
    applied: bool
    files: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    message: str = ""


def _git(
    cwd: Path, *args: str, env: dict[str, str] | None = None, input: bytes | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(
        ["git", *_CONFIG, *args],
        cwd=cwd,
        input=input,
        capture_output=True,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})},
    )
    if check and proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip() or proc.stdout.decode(errors="replace").strip()
        command = next((arg for arg in args if not arg.startswith("-") and "=" not in arg), "")
        raise WorkspaceError(f"git {command} failed: {detail}")
    return proc


def _out(cwd: Path, *args: str, **kw) -> str:
    return _git(cwd, *args, **kw).stdout.decode().strip()


def index_path(worktree: Path) -> Path:
    return Path(_out(worktree, "rev-parse", "--path-format=absolute", "--git-path", "index"))


def snapshot_tree(worktree: Path, index: Path | None = None) -> str:
    """The tree of `worktree` as it is on disk (tracked, modified, untracked-not-ignored, deletions),
    written without touching its index (`index`, found when not given): a copy takes the `git add -A`."""
    index = index or index_path(worktree)
    with tempfile.TemporaryDirectory(prefix="dsagent-index-") as tmp:
        scratch = Path(tmp) / "index"
        if index.exists():
            # The copy keeps the stat data, so unchanged files are not re-hashed, and the index's
            # mtime: git re-reads every file whose mtime is not older than the index (a same-size
            # edit in the second the index was written looks clean by stat alone).
            shutil.copy2(index, scratch)
        return _tree_of(worktree, scratch)


def _tree_of(worktree: Path, scratch: Path) -> str:
    """`git add -A` of `worktree` into the index file `scratch` (created empty when missing) -> its tree."""
    env = {"GIT_INDEX_FILE": str(scratch)}
    if not scratch.exists():
        _git(worktree, "read-tree", "--empty", env=env)
    _git(worktree, "-c", "core.fileMode=true", "add", "-A", "--", ".", env=env)
    return _out(worktree, "write-tree", env=env)


class Workspace:
    """A temporary worktree of `repo` holding the user's current state. Use as a context manager or
    call `cleanup()`; nothing of it stays behind (no worktree entry, no ref, no directory)."""

    def __init__(self, repo: Path | str, parent_dir: Path | str | None = None) -> None:
        start = Path(repo).resolve()
        proc = _git(start, "rev-parse", "--show-toplevel", check=False)
        if proc.returncode != 0:
            raise WorkspaceError(f"{start} is not inside a git work tree; run `git init` there first")
        self.repo = Path(proc.stdout.decode().strip())
        self.head = self._head()
        self._user_index = index_path(self.repo)
        self.base_tree = snapshot_tree(self.repo, self._user_index)
        parents = ["-p", self.head] if self.head else []
        self.base_commit = _out(
            self.repo,
            "commit-tree",
            self.base_tree,
            *parents,
            "-m",
            "dsagent: workspace base (the user's state)",
            env=_IDENTITY,
        )
        self._tmp = Path(tempfile.mkdtemp(prefix="dsagent-ws-", dir=parent_dir))
        self.root = self._tmp / self.repo.name
        try:
            _git(self.repo, "worktree", "add", "--detach", "--quiet", str(self.root), self.base_commit)
        except WorkspaceError:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise
        # Snapshots of the workspace go through an index of our own, kept up to date by each `git add -A`:
        # the worktree's index stays at the base (for `git diff` inside it), and ours, rewritten each time,
        # keeps its stat data fresh, so only files changed since the last snapshot are hashed again.
        self._own_index = self._tmp / "index"
        shutil.copy2(index_path(self.root), self._own_index)
        self._own_index_lock = threading.Lock()  # the TUI reads the patch while the agent's tools run
        self._closed = False

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def _head(self) -> str | None:
        proc = _git(self.repo, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False)
        return proc.stdout.decode().strip() if proc.returncode == 0 else None

    # -- the agent's change --------------------------------------------------------------------------
    @property
    def index_dir(self) -> Path:
        """Where the code index of this repository is kept: in the user's repository, so it outlives
        the workspace (entries are keyed by content, so the worktree's edits never confuse it)."""
        return self.repo / ".dsagent" / "index"

    def current_tree(self) -> str:
        """The tree of the workspace as it is now."""
        with self._own_index_lock:
            return _tree_of(self.root, self._own_index)

    def patch_bytes(self) -> bytes:
        """The agent's change as a binary-safe git patch (exact bytes)."""
        return self._diff(self.base_tree, self.current_tree())

    def patch(self) -> str:
        """The patch as text; bytes that are not UTF-8 survive as surrogate escapes."""
        return self.patch_bytes().decode("utf-8", errors="surrogateescape")

    def changed_files(self, tree: str | None = None) -> list[str]:
        """Paths the agent added, changed or removed (`tree`: the current tree, when already known)."""
        out = _git(self.repo, "diff", "--name-only", "-z", "--no-renames", self.base_tree, tree or self.current_tree())
        return [name for name in out.stdout.decode("utf-8", "surrogateescape").split("\0") if name]

    def _diff(self, old_tree: str, new_tree: str) -> bytes:
        return _git(self.repo, "diff", *_DIFF, old_tree, new_tree).stdout

    # -- handing it back -----------------------------------------------------------------------------
    def apply_to_user_tree(self) -> ApplyResult:
        """Merge the agent's change into the user's working tree as it is now. Files the user changed
        meanwhile are merged line by line; if the user changed the same lines, nothing is changed and
        the conflicting files are reported. The user's index (what they staged) is left alone."""
        theirs = self.current_tree()
        if theirs == self.base_tree:
            return ApplyResult(True, [], [], "the workspace has no changes")
        files = self.changed_files(theirs)
        ours = snapshot_tree(self.repo, self._user_index)
        merged, conflicts = self._merge(ours, theirs)
        if conflicts:
            return ApplyResult(
                False,
                files,
                conflicts,
                "you changed the same lines meanwhile; nothing was applied: " + ", ".join(conflicts),
            )
        patch = self._diff(ours, merged)
        if not patch:
            return ApplyResult(True, files, [], "the change is already in your tree")
        # `git apply` checks every hunk before it writes anything: it applies all or nothing.
        proc = _git(self.repo, "apply", "--binary", "--whitespace=nowarn", "-", input=patch, check=False)
        if proc.returncode != 0:
            detail = proc.stderr.decode(errors="replace").strip()
            return ApplyResult(False, files, [], f"your tree changed while merging; nothing was applied ({detail})")
        return ApplyResult(True, files, [], f"applied changes to {counted(len(files), 'file')}")

    def _merge(self, ours: str, theirs: str) -> tuple[str, list[str]]:
        """Three-way merge of two trees over the base tree: (merged tree, conflicting paths)."""
        if ours == self.base_tree:
            return theirs, []
        if ours == theirs:
            return ours, []
        side_a = self._commit(ours, self.base_commit, "ours")
        side_b = self._commit(theirs, self.base_commit, "theirs")
        proc = _git(
            self.repo, "merge-tree", "--write-tree", "--name-only", "--no-messages", side_a, side_b, check=False
        )
        lines = proc.stdout.decode("utf-8", "surrogateescape").splitlines()
        if proc.returncode == 0:
            return lines[0].strip(), []
        if proc.returncode == 1:
            return lines[0].strip(), sorted({line for line in lines[1:] if line})
        detail = proc.stderr.decode(errors="replace").strip()
        raise WorkspaceError(f"git merge-tree failed ({detail}); dsagent needs git 2.38 or newer")

    def _commit(self, tree: str, parent: str | None, message: str, env: dict[str, str] | None = None) -> str:
        parents = ["-p", parent] if parent else []
        return _out(self.repo, "commit-tree", tree, *parents, "-m", message, env=env or _IDENTITY)

    def commit_to_branch(self, name: str, message: str = "dsagent: apply the agent's change") -> str:
        """Commit the agent's change on a new branch `name` (the user's checkout stays as it is) and
        return the commit id. The branch starts at HEAD; when the change cannot be separated from the
        user's uncommitted work, that work is committed first, on the branch only."""
        if _git(self.repo, "check-ref-format", "--branch", name, check=False).returncode != 0:
            raise WorkspaceError(f"{name!r} is not a valid branch name")
        if _git(self.repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{name}", check=False).returncode == 0:
            raise WorkspaceError(f"branch {name!r} already exists; choose another name")
        theirs = self.current_tree()
        if theirs == self.base_tree:
            raise WorkspaceError("the workspace has no changes to commit")
        env = self._user_identity()
        head_tree = _out(self.repo, "rev-parse", f"{self.head}^{{tree}}") if self.head else self._empty_tree()
        if head_tree == self.base_tree:
            commit = self._commit(theirs, self.head, message, env)
        else:
            merged, conflicts = self._merge(head_tree, theirs)  # HEAD plus only the agent's change
            if not conflicts:
                commit = self._commit(merged, self.head, message, env)
            else:
                wip = self._commit(self.base_tree, self.head, "dsagent: uncommitted work the change builds on", env)
                commit = self._commit(theirs, wip, message, env)
        _git(self.repo, "update-ref", f"refs/heads/{name}", commit, "0" * 40)
        return commit

    def _user_identity(self) -> dict[str, str]:
        name = _git(self.repo, "config", "user.name", check=False).stdout.decode().strip()
        email = _git(self.repo, "config", "user.email", check=False).stdout.decode().strip()
        if name and email:
            return {}
        return _IDENTITY

    def _empty_tree(self) -> str:
        return _out(self.repo, "hash-object", "-t", "tree", "--stdin", input=b"")

    # -- leaving nothing behind ----------------------------------------------------------------------
    def cleanup(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        _git(self.repo, "worktree", "remove", "--force", "--force", str(self.root), check=False)
        shutil.rmtree(self._tmp, ignore_errors=True)
        _git(self.repo, "worktree", "prune", check=False)
