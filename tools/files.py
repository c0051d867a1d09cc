"""read_file, write_file and list_dir."""

from __future__ import annotations

from collections import defaultdict
from itertools import islice
from typing import ClassVar

from dsagent.tools.base import ToolArgs, ToolError, ToolResult
from dsagent.tools.context import ToolContext
from dsagent.tools.textfile import TextFile, diff_stats, looks_binary, unified_diff, write_atomic
from pydantic import Field

MAX_LINES = 2000
MAX_LINE_CHARS = 2000
MAX_OUTPUT_CHARS = 60_000
MAX_WHOLE_READ = 20 * 1024 * 1024
MAX_LIST_ENTRIES = 400


class ReadFileArgs(ToolArgs):
    path: str = Field(description="File to read, relative to the repository root.")
    start_line: int | None = Field(None, ge=1, description="First line to show (1-based). Default: 1.")
    end_line: int | None = Field(
        None, ge=1, description=f"Last line to show, inclusive. Default: at most {MAX_LINES} lines from start_line."
    )


class ReadFile:
    name: ClassVar[str] = "read_file"
    description: ClassVar[str] = (
        "Read a text file with line numbers (format: number, tab, line). Use start_line/end_line for a range; "
        f"long files show the first {MAX_LINES} lines and say how to read on."
    )
    args_model: ClassVar[type[ToolArgs]] = ReadFileArgs
    mutates: ClassVar[bool] = False

    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx

    def run(self, args: ReadFileArgs) -> ToolResult:
        real = self.ctx.jail.resolve(args.path)
        rel = self.ctx.jail.relative(real)
        if real.is_dir():
            raise ToolError(f"{rel} is a directory; use list_dir to see what is in it")
        if not real.exists():
            raise ToolError(f"{rel} does not exist; use list_dir or search_code to find the right path")
        start = args.start_line or 1
        if args.end_line is not None and args.end_line < start:
            raise ToolError(f"end_line {args.end_line} is before start_line {start}")
        size = real.stat().st_size
        with open(real, "rb") as handle:
            if looks_binary(handle.read(8192)):
                raise ToolError(f"{rel} is a binary file ({size} bytes); read_file shows text files only")
            if size > MAX_WHOLE_READ and args.start_line is None:
                raise ToolError(f"{rel} is {size} bytes; read a range with start_line/end_line")
            handle.seek(0)
            stop = args.end_line if args.end_line is not None else start + MAX_LINES - 1
            if size <= MAX_WHOLE_READ:
                every = handle.readlines()
                wanted, total = every[start - 1 : stop], len(every)
            else:  # too big to count: stream just the range
                wanted, total = list(islice(handle, start - 1, stop)), None
        if size == 0:
            return ToolResult(text=f"{rel} is empty (0 lines)", data={"path": rel, "lines": 0})
        if not wanted:
            count = total if total is not None else "fewer"
            raise ToolError(f"{rel} has {count} lines; start_line {start} is past the end")
        return self._render(rel, wanted, start, total)

    def _render(self, rel: str, raw_lines: list[bytes], start: int, total: int | None) -> ToolResult:
        out, chars, bad_utf8 = [], 0, False
        last = start - 1
        for number, raw in enumerate(raw_lines, start):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                line, bad_utf8 = raw.decode("utf-8", errors="replace"), True
            line = line.rstrip("\r\n")
            if len(line) > MAX_LINE_CHARS:
                line = line[:MAX_LINE_CHARS] + f" … ({len(line) - MAX_LINE_CHARS} more characters)"
            entry = f"{number:>6}\t{line}"
            if chars + len(entry) > MAX_OUTPUT_CHARS and out:
                break
            out.append(entry)
            chars += len(entry) + 1
            last = number
        of_total = f" of {total}" if total is not None else ""
        header = f"{rel} (lines {start}-{last}{of_total})"
        notes = []
        if bad_utf8:
            notes.append("[not valid UTF-8: undecodable bytes are shown as �]")
        if total is None or last < total:
            notes.append(f"[more lines follow; continue with start_line={last + 1}]")
        text = "\n".join([header, *out, *notes])
        return ToolResult(text=text, data={"path": rel, "start_line": start, "end_line": last, "total_lines": total})


class WriteFileArgs(ToolArgs):
    path: str = Field(description="File to create or overwrite, relative to the repository root.")
    content: str = Field(description="The complete new content of the file.")


class WriteFile:
    name: ClassVar[str] = "write_file"
    description: ClassVar[str] = (
        "Create a file or replace its whole content (parent directories are created). Returns the unified diff. "
        "For changing part of an existing file prefer edit_file."
    )
    args_model: ClassVar[type[ToolArgs]] = WriteFileArgs
    mutates: ClassVar[bool] = True

    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx

    def run(self, args: WriteFileArgs) -> ToolResult:
        real = self.ctx.jail.resolve(args.path, write=True)
        rel = self.ctx.jail.relative(real)
        if real.is_dir():
            raise ToolError(f"{rel} is a directory; give a file path")
        before, crlf, note = None, False, ""
        if real.exists():
            try:
                old = TextFile.read(real, rel)
                before, crlf = old.text, old.crlf
            except ToolError:
                note = " (the previous content was binary or not UTF-8)"
        content = args.content
        if crlf and "\r\n" not in content:
            content = content.replace("\n", "\r\n")
            note += " (kept the file's CRLF line endings)"
        real.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(real, content.encode("utf-8"))
        self.ctx.file_changed(rel)
        diff = unified_diff(rel, before, args.content.replace("\r\n", "\n") if crlf else args.content)
        added, removed = diff_stats(diff)
        verb = "Created" if before is None and not note else "Wrote"
        lines = content.count("\n") + (0 if content.endswith("\n") or not content else 1)
        text = f"{verb} {rel} ({lines} lines, +{added} -{removed}){note}\n{diff}".rstrip("\n")
        return ToolResult(text=text, data={"path": rel, "diff": diff, "created": before is None and not note})


class ListDirArgs(ToolArgs):
    path: str = Field(".", description="Directory to list, relative to the repository root. Default: the root.")
    depth: int = Field(2, ge=1, le=6, description="How many directory levels to show (1 = direct entries only).")


class ListDir:
    name: ClassVar[str] = "list_dir"
    description: ClassVar[str] = (
        "List a directory as an indented tree (directories end with '/'), skipping files ignored by .gitignore. "
        "Directories deeper than `depth` show their file count."
    )
    args_model: ClassVar[type[ToolArgs]] = ListDirArgs
    mutates: ClassVar[bool] = False

    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx

    def run(self, args: ListDirArgs) -> ToolResult:
        real = self.ctx.jail.resolve(args.path)
        rel = self.ctx.jail.relative(real)
        if not real.exists():
            raise ToolError(f"{rel} does not exist; list '.' to see the top level")
        if not real.is_dir():
            raise ToolError(f"{rel} is a file; use read_file to read it")
        prefix = "" if rel == "." else rel + "/"
        names = [n[len(prefix) :] for n in self.ctx.files() if n.startswith(prefix)]
        if not names:
            return ToolResult(text=f"{rel}/ is empty, or everything in it is ignored by .gitignore", data={"path": rel})
        tree = _Tree.build(names)
        lines: list[str] = []
        tree.render(lines, indent=0, depth=args.depth)
        shown = lines[:MAX_LIST_ENTRIES]
        if len(lines) > MAX_LIST_ENTRIES:
            shown.append(f"… {len(lines) - MAX_LIST_ENTRIES} more entries; list a subdirectory or lower depth")
        header = f"{prefix or './'} ({len(names)} files)"
        return ToolResult(text="\n".join([header, *shown]), data={"path": rel, "files": len(names)})


class _Tree:
    def __init__(self) -> None:
        self.dirs: dict[str, _Tree] = defaultdict(_Tree)
        self.files: list[str] = []

    @classmethod
    def build(cls, names: list[str]) -> _Tree:
        root = cls()
        for name in names:
            *dirs, leaf = name.split("/")
            node = root
            for part in dirs:
                node = node.dirs[part]
            node.files.append(leaf)
        return root

    def count(self) -> int:
        return len(self.files) + sum(child.count() for child in self.dirs.values())

    def render(self, lines: list[str], indent: int, depth: int) -> None:
        pad = "  " * indent
        for name in sorted(self.dirs):
            child = self.dirs[name]
            if depth > 1:
                lines.append(f"{pad}{name}/")
                child.render(lines, indent + 1, depth - 1)
            else:
                lines.append(f"{pad}{name}/ ({child.count()} files)")
            if len(lines) > MAX_LIST_ENTRIES:
                return
        lines.extend(f"{pad}{name}" for name in sorted(self.files))
