"""The change an edit would make, computed before it runs, so the approval modal can show the exact
diff. Read-only: it resolves paths inside the workspace and never writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dsagent.tools.textfile import unified_diff

MAX_FILE_BYTES = 2_000_000  # a file this large is shown as arguments, not diffed


def _inside(root: Path, path: str) -> Path | None:
    root = root.resolve()
    target = (root / path).resolve()
    return target if target == root or root in target.parents else None


def proposed_diff(root: Path, name: str, arguments: dict[str, Any]) -> str | None:
    """The unified diff `edit_file` / `write_file` would produce, or None (the modal then shows the
    arguments; the tool itself reports why the call cannot apply)."""
    path = arguments.get("path")
    if name not in ("edit_file", "write_file") or not isinstance(path, str):
        return None
    target = _inside(root, path)
    if target is None or target.is_dir():
        return None
    try:
        before = target.read_text(encoding="utf-8") if target.exists() else None
    except (OSError, UnicodeDecodeError):
        return None
    if before is not None and len(before) > MAX_FILE_BYTES:
        return None
    if name == "write_file":
        return unified_diff(path, before, str(arguments.get("content", "")))
    old, new = str(arguments.get("old_string", "")), str(arguments.get("new_string", ""))
    if not old:
        return unified_diff(path, before, new) if not before else None
    if before is None or old not in before:
        return None
    after = before.replace(old, new) if arguments.get("replace_all") else before.replace(old, new, 1)
    return unified_diff(path, before, after)
