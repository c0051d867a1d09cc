"""The path jail: every path a tool touches resolves inside the workspace.

Refused: `..` escapes, absolute paths outside, symlinks that lead out (or loop), anything under a
`.git` directory (reading it leaks remotes and credentials, writing it rewrites history or plants
hooks), device files, FIFOs and sockets, NUL bytes and names longer than the file system allows."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from dsagent.tools.base import ToolError

MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
_HINT = "use a path relative to the repository root"


class PathJail:
    """Resolves model-supplied paths against one root and refuses any that would leave it."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(os.path.realpath(root))

    def resolve(self, path: str, *, write: bool = False) -> Path:
        """The real absolute path for `path`, or ToolError saying why it is refused."""
        joined = self._lexical(path)
        real = Path(os.path.realpath(joined))
        if not self._inside(real):
            raise ToolError(f"path {path!r} is a symlink that leads outside the workspace ({real}); {_HINT}")
        self._refuse_git(path, real)
        if os.path.lexists(joined):
            try:
                st = os.stat(joined)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise ToolError(f"path {path!r} is a symlink loop; it cannot be read or written") from None
                if exc.errno == errno.ENOENT and not write:  # a dangling symlink inside the workspace
                    raise ToolError(f"path {path!r} is a broken symlink (target {real} does not exist)") from None
                if exc.errno != errno.ENOENT:
                    raise ToolError(f"path {path!r}: {exc.strerror}") from None
            else:
                if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                    raise ToolError(f"path {path!r} is {_kind(st.st_mode)}, not a regular file or directory; refused")
        return real

    def relative(self, real: Path) -> str:
        """Posix path of `real` relative to the root ('.' for the root itself)."""
        rel = real.relative_to(self.root).as_posix()
        return rel or "."

    def _lexical(self, path: str) -> Path:
        if not isinstance(path, str):
            raise ToolError(f"path must be a string, got {type(path).__name__}")
        if "\0" in path:
            raise ToolError(f"path {path!r} contains a NUL byte; refused")
        if not path.strip():
            raise ToolError(f"path is empty; {_HINT}, e.g. 'src/main.py' or '.'")
        encoded = path.encode("utf-8", errors="surrogateescape")
        if len(encoded) > MAX_PATH_BYTES:
            raise ToolError(f"path is {len(encoded)} bytes long (limit {MAX_PATH_BYTES}); refused")
        cleaned = path.strip().replace("\\", "/")
        parts = [p for p in cleaned.split("/") if p]
        too_long = next((p for p in parts if len(p.encode("utf-8", errors="surrogateescape")) > MAX_NAME_BYTES), None)
        if too_long is not None:
            raise ToolError(f"a path component is longer than {MAX_NAME_BYTES} bytes ({too_long[:40]}…); refused")
        if cleaned.startswith("~"):
            raise ToolError(f"path {path!r} starts with '~', which is not expanded here; {_HINT}")
        if "://" in cleaned:
            raise ToolError(f"path {path!r} looks like a URL; {_HINT}")
        joined = Path(os.path.normpath(cleaned if cleaned.startswith("/") else self.root / cleaned))
        if not self._inside(joined):
            where = "an absolute path outside" if cleaned.startswith("/") else "outside"
            raise ToolError(f"path {path!r} is {where} the workspace ({self.root}); {_HINT}")
        return joined

    def _inside(self, real: Path) -> bool:
        return real == self.root or self.root in real.parents

    def _refuse_git(self, path: str, real: Path) -> None:
        for candidate in (Path(os.path.normpath(self.root / path.replace("\\", "/"))), real):
            if not self._inside(candidate):
                continue
            parts = candidate.relative_to(self.root).parts
            if any(part.lower() == ".git" for part in parts):
                raise ToolError(f"path {path!r} is inside .git; git metadata is off limits to tools")


def _kind(mode: int) -> str:
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"
