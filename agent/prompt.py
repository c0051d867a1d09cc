"""The system prompt: `prompts/system.md` with its {placeholders} filled, plus the repository's AGENTS.md."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

AGENTS_FILE = "AGENTS.md"
AGENTS_MAX_CHARS = 20_000

APPROVAL_NOTES = {
    "auto": "Every tool runs without asking.",
    "ask": "The user approves each edit and command before it runs; a denied call comes back with their reason.",
    "read-only": "This session is read-only: tools that edit files or run commands are refused. Investigate and "
    "report what you find.",
}


def load_prompt(name: str) -> str:
    return resources.files("dsagent.prompts").joinpath(name).read_text(encoding="utf-8")


def render(name: str, **values: Any) -> str:
    return load_prompt(name).format(**values)


def agents_md(repo: Path | None) -> str:
    """The repository's AGENTS.md as a prompt section, or "" when there is none."""
    if repo is None:
        return ""
    path = Path(repo) / AGENTS_FILE
    if not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    if len(text) > AGENTS_MAX_CHARS:
        text = text[:AGENTS_MAX_CHARS] + "\n[AGENTS.md cut here: it is longer than the prompt allows]"
    return render("agents_md.md", content=text)


def system_prompt(repo: Path | None, approval: str = "auto") -> str:
    name = Path(repo).resolve().name if repo is not None else "the current directory"
    return render("system.md", repo_name=name, approval_note=APPROVAL_NOTES[approval], agents_md=agents_md(repo))
