"""Marker search over a growing buffer, the core of the streaming DSML parser."""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=32)
def _compile(markers: tuple[str, ...]) -> tuple[re.Pattern[str], frozenset[str], int]:
    """A pattern finding the leftmost marker (longest first at one place), every proper prefix of the
    markers (text that may still grow into one), and the longest marker's length."""
    pattern = re.compile("|".join(re.escape(m) for m in sorted(markers, key=len, reverse=True)))
    prefixes = frozenset(m[:i] for m in markers for i in range(1, len(m)))
    return pattern, prefixes, max(len(m) for m in markers)


def scan(buf: str, markers: tuple[str, ...], final: bool) -> tuple[int, str | None]:
    """Find the first marker in `buf`: return (n, marker) where `buf[:n]` is plain text and `marker`
    starts at n. With no marker yet, return (n, None): `buf[:n]` is plain text for sure and, unless
    `final`, `buf[n:]` is kept back because it may still grow into a marker. Among markers starting at
    the same place the longest wins. The answer never depends on how `buf` was split into deltas.
    """
    pattern, prefixes, longest = _compile(markers)
    found = pattern.search(buf)
    best_pos, best = (found.start(), found.group()) if found else (len(buf), None)
    if final:
        return best_pos, best
    # A marker that starts at or before best_pos and runs past the end of buf may still complete.
    for start in range(max(0, len(buf) - longest + 1), min(best_pos, len(buf) - 1) + 1):
        if buf[start:] in prefixes:
            return start, None
    return best_pos, best


def snippet(text: str, limit: int = 60) -> str:
    """A short quoted excerpt of model output for an error message."""
    text = text.strip()
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return repr(text)
