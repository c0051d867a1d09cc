"""search_code's text kind: a Python regular expression over every file git does not ignore.

Most files cannot match: every match of `def get_\\w+_display` contains "def get_". git's
multithreaded fixed-string search finds the files holding that literal, and only those are read and
matched line by line."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

from dsagent.tools.base import ToolResult
from dsagent.tools.context import ToolContext
from dsagent.tools.textfile import looks_binary, read_regular

MAX_HITS = 50
MAX_TEXT_FILE = 2 * 1024 * 1024


def search_text(ctx: ToolContext, query: str, keep: Callable[[str], bool]) -> ToolResult:
    """Matching lines of the files `keep` accepts; case-insensitive when nothing matches exactly."""
    note = ""
    try:
        pattern = re.compile(query, re.MULTILINE)
    except re.error as exc:
        pattern = re.compile(re.escape(query), re.MULTILINE)
        note = f"query is not a valid regular expression ({exc}); searched for it as plain text\n"
    files = sorted((p for p in ctx.files() if keep(p)), key=lambda p: (is_test(p), p))
    hits = _scan(ctx, _candidates(ctx, files, pattern.pattern, False), pattern)
    if not hits and not pattern.flags & re.IGNORECASE:
        loose = re.compile(pattern.pattern, re.MULTILINE | re.IGNORECASE)
        hits = _scan(ctx, _candidates(ctx, files, pattern.pattern, True), loose)
        if hits:
            note += "no case-sensitive match; these match ignoring case\n"
    if not hits:
        return ToolResult(text=note + f"no match for {query!r} in {len(files)} files", data={"matches": []})
    lines = [f"{p}:{n}: {t}" for p, n, t in hits]
    matches = [{"path": p, "line": n, "text": t} for p, n, t in hits[:MAX_HITS]]
    return ToolResult(text=note + cap(lines, "matches"), data={"matches": matches})


def _candidates(ctx: ToolContext, files: list[str], pattern: str, ignore_case: bool) -> list[str]:
    """The files that may match: those git's fixed-string search finds the required literal in, plus
    every untracked file (few: the ones tools created), which git grep would need a tree walk for."""
    literal = required_literal(pattern)
    if literal is None or not ctx.lister.in_git:
        return files
    args = ["git", "grep", "-l", "-z", "-I", "-F", *(["-i"] if ignore_case else []), "-e", literal]
    proc = subprocess.run([*args, "--", "."], cwd=ctx.root, capture_output=True)
    if proc.returncode not in (0, 1):  # 1: no file matches
        return files
    found = set(proc.stdout.decode("utf-8", "surrogateescape").split("\0")) | ctx.lister.untracked
    return [f for f in files if f in found]


def _scan(ctx: ToolContext, files: list[str], pattern: re.Pattern) -> list[tuple[str, int, str]]:
    hits: list[tuple[str, int, str]] = []
    for path in files:
        data = read_regular(ctx.root / path, MAX_TEXT_FILE)
        if data is None or looks_binary(data):
            continue
        text = data.decode("utf-8", errors="replace")
        last_line, last_pos = 1, 0
        for match in pattern.finditer(text):
            start = text.rfind("\n", 0, match.start()) + 1
            last_line += text.count("\n", last_pos, start)
            last_pos = start
            if hits and hits[-1][0] == path and hits[-1][1] == last_line:
                continue
            end = text.find("\n", match.start())
            hits.append((path, last_line, text[start : end if end != -1 else len(text)].strip()[:200]))
            if len(hits) > 10 * MAX_HITS:
                return hits
    return hits


_META = set(".^$*+?{}[]()|")
_OPTIONAL = set("?*{")


def required_literal(pattern: str) -> str | None:
    """The longest run of plain characters every match must contain (at least 3), or None. Only runs
    outside groups and classes count; alternation or inline flags give None."""
    if "|" in pattern or "(?" in pattern:
        return None
    runs, run, depth, i = [], "", 0, 0
    while i < len(pattern):
        ch, step = pattern[i], 1
        if ch == "\\":
            nxt = pattern[i + 1 : i + 2]
            step = 2
            if not nxt or nxt.isalnum():  # \w, \d, \b, \n, \1 ...: not a plain character
                runs.append(run)
                run, ch = "", ""
            else:
                ch = nxt
        elif ch in _META:
            if ch in _OPTIONAL and run:
                run = run[:-1]  # the character before `?`, `*` or `{0,` may be absent
            runs.append(run)
            run = ""
            depth += ch == "("
            depth -= ch == ")"
            if ch == "[":
                step = _class_end(pattern, i) - i
            ch = ""
        if ch and depth == 0:
            run += ch
        elif ch:
            runs.append(run)
            run = ""
        i += step
    runs.append(run)
    best = max(runs, key=len)
    return best if len(best) >= 3 else None


def _class_end(pattern: str, start: int) -> int:
    """Index just past the `]` closing the character class opened at `start`."""
    i = start + 1
    if pattern[i : i + 1] == "^":
        i += 1
    if pattern[i : i + 1] == "]":
        i += 1
    while i < len(pattern):
        if pattern[i] == "\\":
            i += 2
            continue
        if pattern[i] == "]":
            return i + 1
        i += 1
    return len(pattern)


def is_test(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return "test" in path.split("/")[0].lower() or "/test" in path or name.startswith("test_") or ".test." in name


def cap(lines: list[str], what: str) -> str:
    """At most MAX_HITS lines, then how many more there were."""
    if len(lines) <= MAX_HITS:
        return "\n".join(lines)
    more = len(lines) - MAX_HITS
    more_text = f"{more}+" if more >= 9 * MAX_HITS else str(more)
    return "\n".join(lines[:MAX_HITS]) + f"\n… {more_text} more {what}; narrow the search with path"
