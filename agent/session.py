"""Crash-safe session files: `.dsagent/sessions/<id>.jsonl` in the repository.

Line 1 is a header (config with secrets masked, model identity, repository, system prompt); every agent
event follows as one JSON line, written and flushed as it happens and fsynced whenever the
conversation changes (a message, a tool result, a compaction, the end of a turn). A run killed at any
point leaves a file whose complete lines rebuild the conversation; a torn last line is ignored.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from dsagent.agent.events import SCHEMA_VERSION, Event, parse_event
from pydantic import BaseModel, ConfigDict, Field, ValidationError

SESSIONS_DIR = Path(".dsagent") / "sessions"
# Events after which the file is fsynced: the ones that change the conversation or end a turn.
DURABLE = {
    "session_started",
    "turn_started",
    "assistant_message",
    "tool_call_finished",
    "context_compacted",
    "turn_finished",
    "error",
}


class SessionError(Exception):
    """A session that cannot be found or read; the message names the fix."""


class SessionHeader(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["header"] = "header"
    session_id: str
    schema_version: int = SCHEMA_VERSION
    created: float = Field(default_factory=time.time)
    repo: str
    task: str = ""
    model: dict[str, Any]
    """Model identity (backend, path or URL, name, scripted); never an API key."""
    config: dict[str, Any] = Field(default_factory=dict)
    """The effective settings, secrets masked."""
    system: str | None = None
    """The system prompt the session started with; a resumed session keeps it (and its KV cache prefix)."""
    replay_of: str | None = None
    """The session this one replays (`dsagent resume ID --replay`)."""


def new_session_id() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def sessions_dir(repo: Path) -> Path:
    return Path(repo) / SESSIONS_DIR


def _ensure_dir(repo: Path) -> Path:
    folder = sessions_dir(repo)
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder.parent / ".gitignore"
    if not ignore.exists():
        # Keeps session files out of `git status` and out of the workspace copied from the user's tree.
        ignore.write_text("*\n", encoding="utf-8")
    return folder


class SessionWriter:
    """An event sink that appends to the session file. Call it with each event; `close()` at the end."""

    def __init__(self, path: Path, header: SessionHeader | None = None) -> None:
        self.path = path
        self.header = header
        if header is not None:
            self._file: IO[bytes] = open(path, "xb")
            self._write(header.model_dump_json().encode(), durable=True)
        else:
            _drop_torn_tail(path)
            self._file = open(path, "ab")

    @classmethod
    def create(cls, repo: Path, header: SessionHeader) -> SessionWriter:
        return cls(_ensure_dir(repo) / f"{header.session_id}.jsonl", header)

    @classmethod
    def append_to(cls, path: Path) -> SessionWriter:
        return cls(path)

    def __call__(self, event: Event) -> None:
        self._write(event.model_dump_json().encode(), durable=event.type in DURABLE)

    def _write(self, line: bytes, durable: bool) -> None:
        if self._file.closed:
            return
        self._file.write(line + b"\n")
        self._file.flush()
        if durable:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()


def _drop_torn_tail(path: Path) -> None:
    """Cut a half-written last line (a run killed mid-write) before appending after it."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


@dataclass
class SavedSession:
    path: Path
    header: SessionHeader
    events: list[Event]

    @property
    def id(self) -> str:
        return self.header.session_id


def load_session(path: Path) -> SavedSession:
    """Header and every complete event line; a torn or unreadable tail line is ignored."""
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as exc:
        raise SessionError(f"cannot read session {path} ({exc.strerror})") from None
    try:
        header = SessionHeader.model_validate_json(lines[0])
    except ValidationError:
        raise SessionError(f"{path} is not a dsagent session file (bad header line)") from None
    if header.schema_version > SCHEMA_VERSION:
        raise SessionError(f"{path} was written by a newer dsagent (schema {header.schema_version}); upgrade dsagent")
    events: list[Event] = []
    body = [line for line in lines[1:] if line.strip()]
    for number, line in enumerate(body):
        try:
            events.append(parse_event(line))
        except ValidationError:
            if number == len(body) - 1:
                break  # the line a killed run was writing
            raise SessionError(f"{path}: line {number + 2} is not a valid event; the file is damaged") from None
    return SavedSession(path, header, events)


@dataclass
class SessionSummary:
    id: str
    path: Path
    created: float
    task: str
    model: str
    steps: int
    status: str


def summarize(saved: SavedSession) -> SessionSummary:
    steps = sum(1 for event in saved.events if event.type == "step_started")
    finished = [event for event in saved.events if event.type == "turn_finished"]
    status = finished[-1].reason if finished else "unfinished"
    model = saved.header.model
    label = f"{model.get('backend', '?')}:{model.get('name') or model.get('path') or ''}"
    if model.get("scripted"):
        label += " (scripted)"
    return SessionSummary(saved.id, saved.path, saved.header.created, saved.header.task, label, steps, status)


def list_sessions(repo: Path) -> list[SessionSummary]:
    """Every readable session of the repository, newest first."""
    folder = sessions_dir(repo)
    found = []
    for path in folder.glob("*.jsonl") if folder.is_dir() else []:
        try:
            found.append(summarize(load_session(path)))
        except SessionError:
            continue
    return sorted(found, key=lambda item: item.created, reverse=True)


def patch_path(session_file: Path) -> Path:
    """Where the workspace's change is kept beside the session file, so `resume` can restore it."""
    return session_file.with_suffix(".patch")


def save_patch(session_file: Path, patch: bytes) -> None:
    """Replace the session's patch atomically: a crash leaves the old one or the new one, never half."""
    target = patch_path(session_file)
    temporary = target.with_suffix(".patch.tmp")
    with open(temporary, "wb") as handle:
        handle.write(patch)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)


def find_session(repo: Path, session_id: str | None = None) -> Path:
    """The newest session, or the one whose id starts with `session_id`."""
    folder = sessions_dir(repo)
    paths = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    if not paths:
        raise SessionError(f'no sessions in {folder}; start one with `dsagent run "task"`')
    if session_id is None:
        return max(paths, key=lambda p: p.stat().st_mtime)
    matches = [p for p in paths if p.stem.startswith(session_id)]
    if not matches:
        raise SessionError(f"no session {session_id!r} in {folder}; `dsagent sessions` lists them")
    if len(matches) > 1:
        raise SessionError(f"{session_id!r} matches {len(matches)} sessions; give more of the id")
    return matches[0]
