"""What the tools of one workspace share: the root, its path jail, the file listing and the code index."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from dsagent.tools.gitfiles import FileLister
from dsagent.tools.paths import PathJail

if TYPE_CHECKING:
    from dsagent.tools.code_index import CodeIndex
    from dsagent.tools.repo_map import RepoMap


def default_index_dir(root: Path) -> Path:
    return Path(root) / ".dsagent" / "index"


class ToolContext:
    """Shared state of the tools bound to one workspace root. The index and the repo map are built
    on first use and then kept, and refreshed incrementally, for the life of the context.

    Keeping them current costs a stat of every file and directory (thousands of system calls on a
    big repository) unless the context knows what changed. With `external_changes=False` (a private
    workspace that only tools modify) it knows: edit_file and write_file report the paths they wrote,
    and any other mutating tool (a shell command) triggers one full check before the next lookup."""

    def __init__(self, root: Path | str, index_dir: Path | str | None = None, external_changes: bool = True) -> None:
        self.root = Path(os.path.realpath(root))
        if not self.root.is_dir():
            raise NotADirectoryError(f"{root} is not a directory")
        self.jail = PathJail(self.root)
        self.lister = FileLister(self.root)
        self.index_dir = Path(index_dir) if index_dir else default_index_dir(self.root)
        self.external_changes = external_changes
        self._index: CodeIndex | None = None
        self._repo_map: RepoMap | None = None
        self._unknown_changes = True  # nothing checked yet
        self._known_changes: set[str] = set()
        self._reported = False

    @property
    def index(self) -> CodeIndex:
        """The code index as last refreshed (created, empty, on first use)."""
        from dsagent.tools.code_index import CodeIndex

        if self._index is None:
            self._index = CodeIndex(self.root, self.index_dir, lister=self.lister)
            self._index.refresh()  # a full check: whatever was pending is seen now
            self._unknown_changes = False
            self._known_changes.clear()
        return self._index

    def fresh_index(self) -> CodeIndex:
        """The code index, in step with the disk."""
        created = self._index is None
        index = self.index
        if not created:
            self.sync()
        return index

    def files(self) -> list[str]:
        """The workspace's files (tracked and untracked, not ignored), in step with the disk."""
        self.sync()
        return self.lister.files(verify=False)

    def sync(self) -> None:
        """Catch the listing and the index up with changes, as cheaply as what is known allows."""
        if self._unknown_changes or self.external_changes:
            if self._index is not None:
                self._index.refresh()  # verifies the listing too
            else:
                self.lister.files()
        elif self._known_changes and self._index is not None:
            self._index.refresh(paths=sorted(self._known_changes))
        self._unknown_changes = False
        self._known_changes.clear()

    @property
    def repo_map(self) -> RepoMap:
        """The repo map over the index; call `fresh_index()` first to see the latest files."""
        from dsagent.tools.repo_map import RepoMap

        if self._repo_map is None:
            self._repo_map = RepoMap(self.index)
        return self._repo_map

    def file_changed(self, rel: str) -> None:
        """A tool created, changed or removed `rel`."""
        self.lister.note(rel)
        self._known_changes.add(rel)
        self._reported = True

    def before_call(self) -> None:
        self._reported = False

    def after_call(self, mutating: bool) -> None:
        """A mutating tool that did not say what it changed (a shell command) may have changed anything."""
        if mutating and not self._reported:
            self._unknown_changes = True

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None
            self._repo_map = None
