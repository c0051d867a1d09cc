"""Small wording helpers shared by the terminal and TUI front ends."""

from __future__ import annotations


def counted(count: int, noun: str) -> str:
    """'1 file', '3 files', '0 files' (nouns that take a plain s)."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
