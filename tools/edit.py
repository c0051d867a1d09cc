"""edit_file: replace an exact piece of a file, and say precisely why when it is not there."""

from __future__ import annotations

from typing import ClassVar

from dsagent.tools.base import ToolArgs, ToolError, ToolResult
from dsagent.tools.context import ToolContext
from dsagent.tools.nearmiss import explain_no_match, match_lines
from dsagent.tools.textfile import TextFile, diff_stats, unified_diff, write_atomic
from pydantic import Field


class EditFileArgs(ToolArgs):
    path: str = Field(description="File to edit, relative to the repository root.")
    old_string: str = Field(
        description="Exact text to replace, including indentation, without read_file's line-number prefixes. "
        "It must occur exactly once unless replace_all is true. Empty creates a new file."
    )
    new_string: str = Field(description="Text to put in its place.")
    replace_all: bool = Field(False, description="Replace every occurrence instead of requiring a unique match.")


class EditFile:
    name: ClassVar[str] = "edit_file"
    description: ClassVar[str] = (
        "Replace old_string with new_string in a file. old_string must match the file exactly and be unique "
        "(or set replace_all). Returns the unified diff; when nothing matches it shows the closest regions."
    )
    args_model: ClassVar[type[ToolArgs]] = EditFileArgs
    mutates: ClassVar[bool] = True

    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx

    def run(self, args: EditFileArgs) -> ToolResult:
        real = self.ctx.jail.resolve(args.path, write=True)
        rel = self.ctx.jail.relative(real)
        if real.is_dir():
            raise ToolError(f"{rel} is a directory; give a file path")
        if not real.exists():
            if args.old_string:
                raise ToolError(f"{rel} does not exist; to create it use write_file (or edit_file with old_string '')")
            return self._write(real, rel, TextFile(text=""), None, args.new_string, 1, 1)
        file = TextFile.read(real, rel)
        text = file.text
        old, new = args.old_string, args.new_string
        if file.crlf:  # the file is edited with "\n" line ends; accept either form from the model
            old, new = old.replace("\r\n", "\n"), new.replace("\r\n", "\n")
        if not old:
            if text:
                raise ToolError(
                    f"old_string is empty but {rel} is not; give the exact text to replace, or use write_file"
                )
            return self._write(real, rel, file, text, new, 1, 1)
        if old == new:
            raise ToolError("old_string and new_string are identical; nothing to change")
        count = text.count(old)
        if count == 0:
            raise ToolError(explain_no_match(rel, text, old))
        if count > 1 and not args.replace_all:
            lines = ", ".join(map(str, match_lines(text, old)))
            raise ToolError(
                f"old_string occurs {count} times in {rel} (starting at lines {lines}); include more surrounding "
                "lines to make it unique, or set replace_all=true to change every occurrence"
            )
        first = match_lines(text, old, limit=1)[0]
        updated = text.replace(old, new) if args.replace_all else text.replace(old, new, 1)
        return self._write(real, rel, file, text, updated, count, first)

    def _write(self, real, rel: str, file: TextFile, before: str | None, after: str, count: int, line: int):
        real.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(real, file.encode(after))
        self.ctx.file_changed(rel)
        diff = unified_diff(rel, before, after)
        added, removed = diff_stats(diff)
        if before is None:
            summary = f"Created {rel}"
        else:
            where = f"{count} occurrences" if count > 1 else f"1 occurrence at line {line}"
            summary = f"Edited {rel}: replaced {where}"
        text = f"{summary} (+{added} -{removed})\n{diff}".rstrip("\n")
        return ToolResult(text=text, data={"path": rel, "diff": diff, "replacements": count})
