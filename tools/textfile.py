"""Text files as the editing tools see them: strict UTF-8, line endings kept, atomic writes, diffs."""

from __future__ import annotations

import difflib
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dsagent.tools.base import ToolError

BINARY_SNIFF = 8192
MAX_EDIT_BYTES = 10 * 1024 * 1024
_LINE = re.compile(r"[^\n]*\n|[^\n]+$")


def looks_binary(head: bytes) -> bool:
    """Git's rule: a NUL byte in the first 8 KiB means binary."""
    return b"\0" in head[:BINARY_SNIFF]


@dataclass
class TextFile:
    """A decoded text file. `text` uses "\\n" when the file is uniformly CRLF, so edits and diffs see
    plain lines; `encode` puts the file's own line endings and BOM back."""

    text: str
    crlf: bool = False
    bom: bool = False

    @classmethod
    def read(cls, path: Path, rel: str) -> TextFile:
        size = path.stat().st_size
        if size > MAX_EDIT_BYTES:
            raise ToolError(f"{rel} is {size} bytes, over the {MAX_EDIT_BYTES // 2**20} MiB limit for editing")
        data = path.read_bytes()
        if looks_binary(data):
            raise ToolError(f"{rel} is a binary file ({size} bytes); it was left untouched")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ToolError(
                f"{rel} is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                "it was left untouched. Rewrite it with write_file only if replacing it whole is intended"
            ) from None
        bom = text.startswith("\ufeff")
        if bom:
            text = text[1:]
        crlf = "\r\n" in text and text.count("\r\n") == text.count("\n")
        if crlf:
            text = text.replace("\r\n", "\n")
        return cls(text=text, crlf=crlf, bom=bom)

    def encode(self, text: str) -> bytes:
        if self.crlf:
            text = text.replace("\r\n", "\n").replace("\n", "\r\n")
        return (("\ufeff" if self.bom else "") + text).encode("utf-8")


def read_regular(path: Path | str, max_bytes: int) -> bytes | None:
    """The bytes of a regular file that is not a symlink and not over `max_bytes`, else None. Used
    where files are read in bulk (search, index), which must never follow a link out of the workspace
    or block on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > max_bytes:
            return None
        return handle.read()


def write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file and rename: a crash never leaves half a file, and a hard link
    to the old file (possibly outside the workspace) is never written through. Keeps the mode."""
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def unified_diff(rel: str, before: str | None, after: str | None, context: int = 3) -> str:
    """A git-style unified diff of one file; None means the file does not exist on that side."""
    old_name = f"a/{rel}" if before is not None else "/dev/null"
    new_name = f"b/{rel}" if after is not None else "/dev/null"
    old_lines = _lines(before or "")
    new_lines = _lines(after or "")
    out = []
    for line in difflib.unified_diff(old_lines, new_lines, old_name, new_name, n=context):
        if not line.endswith("\n"):
            line += "\n\\ No newline at end of file\n"
        out.append(line)
    return "".join(out)


def _lines(text: str) -> list[str]:
    # Split on "\n" only: str.splitlines would also break on form feeds and other separators.
    return _LINE.findall(text)


def diff_stats(diff: str) -> tuple[int, int]:
    """(added, removed) line counts of a unified diff."""
    added = removed = 0
    for line in diff.splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    return added, removed
