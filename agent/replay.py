"""`dsagent resume ID --replay`: re-run a session's tool calls against its recorded model outputs.

The recorded assistant messages (step completions and context summaries) become a scripted backend,
the recorded user messages are sent again in a fresh workspace of the repository, under the settings
the session was recorded with. Every tool result is compared with the recorded one; exit 0 when all
match. The replay is a new session of its own, labelled scripted, whose header names the original.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dsagent.agent.events import Event, ToolCallFinished
from dsagent.agent.runner import AgentRun, RunSetupError
from dsagent.agent.scripted import ScriptedBackend
from dsagent.agent.session import SavedSession
from pydantic import ValidationError


def recorded_script(saved: SavedSession) -> list[dict[str, Any]]:
    return [{**event.message, "purpose": event.purpose} for event in saved.events if event.type == "assistant_message"]


def recorded_settings(saved: SavedSession) -> Any:
    """The settings the session ran under (its header), or the current defaults if they no longer validate."""
    from dsagent.config import Settings

    config = dict(saved.header.config)
    if isinstance(config.get("model"), dict):
        config["model"] = {**config["model"], "api_key": None}
    try:
        return Settings(**config)
    except ValidationError:
        return Settings()


TIMING = re.compile(r"\d+(?:\.\d+)?\s?(?:s|ms|sec|seconds)\b")


def _same(old: ToolCallFinished, new: ToolCallFinished) -> bool:
    """Equal results, durations aside (commands report how long they took)."""
    return (old.name, old.ok, TIMING.sub("<time>", old.output)) == (new.name, new.ok, TIMING.sub("<time>", new.output))


def compare(recorded: list[ToolCallFinished], replayed: list[ToolCallFinished]) -> list[str]:
    """One line per difference between two runs' tool results, in call order."""
    problems = []
    for index, (old, new) in enumerate(zip(recorded, replayed, strict=False)):
        if not _same(old, new):
            problems.append(
                f"call {index + 1} ({old.name}): recorded ok={old.ok}, replayed ok={new.ok}; "
                f"outputs {'match' if old.output == new.output else 'differ'}"
            )
    if len(recorded) != len(replayed):
        problems.append(f"recorded {len(recorded)} tool calls, replayed {len(replayed)}")
    return problems


def replay_session(
    saved: SavedSession,
    root: Path,
    headless: bool,
    patch: Path | None,
    no_sandbox: bool,
    sinks: list[Callable[[Event], None]],
) -> int:
    from dsagent.cli import err_console, fail

    turns = [event.user_message for event in saved.events if event.type == "turn_started"]
    if not turns:
        raise fail(f"session {saved.id} has no turns to replay")
    settings = recorded_settings(saved)
    backend = ScriptedBackend(recorded_script(saved), source=f"replay of {saved.id}")
    replayed: list[ToolCallFinished] = []

    def keep(event: Event) -> None:
        if event.type == "tool_call_finished":
            replayed.append(event)

    try:
        run = AgentRun(
            settings, root, backend, task=turns[0], sinks=[*sinks, keep], sandbox=not no_sandbox, replay_of=saved.id
        )
    except RunSetupError as exc:
        raise fail(str(exc), exc.code) from None
    try:
        for message in turns:
            run.agent.send(message)
        run.finish(patch)
    finally:
        run.close()
    recorded = [event for event in saved.events if event.type == "tool_call_finished"]
    problems = compare(recorded, replayed)
    if not headless:
        verdict = "identical" if not problems else f"{len(problems)} difference(s)"
        err_console.print(f"replay of {saved.id}: {len(replayed)} tool calls, {verdict}", markup=False, highlight=False)
        for line in problems[:20]:
            err_console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    return 0 if not problems else 1
