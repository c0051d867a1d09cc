"""Why an edit's old_string did not match, told so the model can fix it in one step: the regions that
match except for whitespace, or the closest regions with a diff against what was asked for."""

from __future__ import annotations

import bisect
import difflib
import re

MAX_CANDIDATES = 3
MIN_RATIO = 0.6
_NUMBERED = re.compile(r"^\s*\d+\t")
_NON_SPACE = re.compile(r"\S+")


def explain_no_match(rel: str, text: str, old: str) -> str:
    """The error text for an old_string that occurs nowhere in `text`."""
    lines = text.split("\n")
    numbered = _strip_line_numbers(old)
    if numbered is not None and numbered in text:
        line = text[: text.index(numbered)].count("\n") + 1
        return (
            f"old_string was not found in {rel}: it carries the 'N<TAB>' line-number prefixes that read_file adds. "
            f"Without them it matches at line {line}; send the text without the prefixes."
        )
    regions = _whitespace_matches(text, old)
    if regions:
        shown = "\n\n".join(_excerpt(lines, a, b) for a, b in regions[:MAX_CANDIDATES])
        where = ", ".join(_span(a, b) for a, b in regions[:MAX_CANDIDATES])
        return (
            f"old_string was not found in {rel} exactly, but it matches {where} if whitespace is ignored "
            f"(only whitespace differs: {_whitespace_kind(old, lines, regions[0])}). The exact current text:\n\n{shown}"
            "\n\nCopy old_string from this text exactly, including indentation."
        )
    candidates = _closest(lines, old)
    if not candidates:
        return (
            f"old_string was not found in {rel} ({len(lines)} lines) and no region is similar to it. "
            "Read the file again with read_file: it may have changed, or the text is in another file."
        )
    parts = []
    for start, end, ratio in candidates:
        region = "\n".join(lines[start - 1 : end])
        diff = _short_diff(old, region)
        parts.append(f"{_span(start, end)} ({ratio:.0%} similar):\n{_excerpt(lines, start, end)}\n{diff}")
    return (
        f"old_string was not found in {rel}. The closest regions (the diff goes from your old_string to the file):"
        "\n\n" + "\n\n".join(parts) + "\n\nCopy old_string exactly from the file's current text."
    )


def match_lines(text: str, old: str, limit: int = 10) -> list[int]:
    """1-based line numbers where each occurrence of `old` starts."""
    found, pos = [], text.find(old)
    while pos != -1 and len(found) < limit:
        found.append(text.count("\n", 0, pos) + 1)
        pos = text.find(old, pos + max(len(old), 1))
    return found


def _strip_line_numbers(old: str) -> str | None:
    lines = old.split("\n")
    nonempty = [line for line in lines if line.strip()]
    if not nonempty or not all(_NUMBERED.match(line) for line in nonempty):
        return None
    return "\n".join(_NUMBERED.sub("", line, count=1) for line in lines)


def _whitespace_matches(text: str, old: str) -> list[tuple[int, int]]:
    """Line ranges whose text equals `old` once all whitespace is removed from both."""
    needle = "".join(old.split())
    if not needle:
        return []
    runs = [(m.start(), m.group()) for m in _NON_SPACE.finditer(text)]
    squeezed = "".join(run for _, run in runs)
    starts, total = [], 0  # squeezed offset where each run begins
    for _, run in runs:
        starts.append(total)
        total += len(run)
    regions, pos = [], squeezed.find(needle)
    while pos != -1 and len(regions) < MAX_CANDIDATES:
        first, last = _original(runs, starts, pos), _original(runs, starts, pos + len(needle) - 1)
        regions.append((text.count("\n", 0, first) + 1, text.count("\n", 0, last) + 1))
        pos = squeezed.find(needle, pos + len(needle))
    return regions


def _original(runs: list[tuple[int, str]], starts: list[int], squeezed_pos: int) -> int:
    i = bisect.bisect_right(starts, squeezed_pos) - 1
    return runs[i][0] + squeezed_pos - starts[i]


def _whitespace_kind(old: str, lines: list[str], region: tuple[int, int]) -> str:
    mine = old.strip("\n").split("\n")
    theirs = lines[region[0] - 1 : region[1]]
    kinds = []
    if any("\t" in line for line in theirs) != any("\t" in line for line in mine):
        kinds.append("tabs vs spaces")
    if [len(x) - len(x.lstrip()) for x in mine] != [len(x) - len(x.lstrip()) for x in theirs]:
        kinds.append("indentation")
    if [x.rstrip() != x for x in mine] != [x.rstrip() != x for x in theirs]:
        kinds.append("trailing whitespace")
    if len(mine) != len(theirs):
        kinds.append("line breaks")
    return ", ".join(kinds) or "spacing inside lines"


def _closest(lines: list[str], old: str) -> list[tuple[int, int, float]]:
    """Up to MAX_CANDIDATES non-overlapping windows of len(old) lines, most similar first."""
    wanted = old.strip("\n").split("\n")
    size = len(wanted)
    if size == 0 or not lines:
        return []
    target = "\n".join(wanted)
    anchors = {line.strip() for line in wanted if len(line.strip()) > 3}
    starts = range(max(1, len(lines) - size + 1))
    if len(lines) > 5000 and anchors:  # big file: only windows that share a line with old_string
        hits = [i for i, line in enumerate(lines) if line.strip() in anchors]
        starts = sorted({s for i in hits for s in range(max(0, i - size + 1), i + 1)})
    matcher = difflib.SequenceMatcher(autojunk=False)
    matcher.set_seq2(target)
    scored = []
    for start in starts:
        window = "\n".join(lines[start : start + size])
        matcher.set_seq1(window)
        if _score(matcher.quick_ratio(), len(window), len(target)) < MIN_RATIO:  # an upper bound: cheap
            continue
        score = _score(matcher.ratio(), len(window), len(target))
        if score >= MIN_RATIO:
            scored.append((score, start))
    scored.sort(reverse=True)
    chosen: list[tuple[int, int, float]] = []
    for ratio, start in scored:
        if all(abs(start + 1 - s) >= size for s, _, _ in chosen):
            chosen.append((start + 1, min(start + size, len(lines)), ratio))
        if len(chosen) == MAX_CANDIDATES:
            break
    return chosen


def _span(start: int, end: int) -> str:
    return f"lines {start}-{end}" if start != end else f"line {start}"


def _score(ratio: float, window: int, target: int) -> float:
    """Similarity of a window to old_string: difflib's ratio, or how much of old_string the window
    contains (so a fragment of a longer line still finds its line)."""
    matched = ratio * (window + target) / 2
    return max(ratio, 0.95 * matched / max(target, 1))


def _excerpt(lines: list[str], start: int, end: int, limit: int = 30) -> str:
    stop = min(end, start + limit - 1)
    body = "\n".join(f"{n:>6}\t{lines[n - 1]}" for n in range(start, stop + 1))
    return body + (f"\n     … {end - stop} more lines" if stop < end else "")


def _short_diff(old: str, region: str, limit: int = 20) -> str:
    mine = old.strip("\n").split("\n")
    diff = list(difflib.unified_diff(mine, region.split("\n"), "old_string", "file", lineterm=""))
    if len(diff) > limit:
        diff = diff[:limit] + [f"… {len(diff) - limit} more diff lines"]
    return "\n".join(diff)
