"""What the bridge reads from saved sessions: the picker's entries, and the edits `/undo` can revert."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

from dsagent.tui.session_picker import SessionEntry

EDIT_TOOLS = ("edit_file", "write_file")


def session_entries(repo: Path) -> list[SessionEntry]:
    """The repository's saved sessions, newest first, as the picker lists them."""
    from dsagent.agent.session import list_sessions

    return [
        SessionEntry(
            item.id,
            item.task.splitlines()[0] if item.task else "",
            dt.datetime.fromtimestamp(item.created).strftime("%Y-%m-%d %H:%M"),
            f"{item.steps} steps · {item.status}",
        )
        for item in list_sessions(repo)
    ]


def edits(session_path: Path, skip: set[str]) -> list[tuple[str, str, str]]:
    """(call id, path, diff) of the session's successful edits, oldest first, leaving out `skip`."""
    from dsagent.agent.session import load_session

    found = []
    for event in load_session(session_path).events:
        if event.type == "tool_call_finished" and event.ok and event.name in EDIT_TOOLS:
            diff = event.data.get("diff")
            if isinstance(diff, str) and diff and event.call_id not in skip:
                found.append((event.call_id, str(event.data.get("path", "?")), diff))
    return found


def reverse_apply(root: Path, diff: str) -> str | None:
    """Take `diff` back out of the tree at `root`; None on success, else why it could not be."""
    done = subprocess.run(
        ["git", "apply", "-R", "--whitespace=nowarn", "-"], input=diff.encode(), cwd=root, capture_output=True
    )
    if done.returncode == 0:
        return None
    reason = done.stderr.decode(errors="replace").strip().splitlines()
    return reason[-1] if reason else "it no longer applies"
