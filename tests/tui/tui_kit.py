"""Helpers for the TUI tests: scripted sessions, settings, waiting on the app, and its screen as text."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dsagent.config import Settings
from rich.console import Console
from textual import events
from textual.app import App
from textual.pilot import Pilot

BUDGET = 0.1  # seconds from a key arriving to the prompt showing it
# The latency counted is the wall time from a key to the prompt showing it, less the time the UI thread
# sat in the kernel's run queue meanwhile (Linux schedstat): on a shared, overloaded machine the operating
# system may not run the process at all for a while, and that says nothing about the app. Time the UI
# thread spends working, or waiting for the GIL held by the agent's threads, still counts.
SCHEDSTAT = Path("/proc/thread-self/schedstat")


def run_queue_wait() -> float:
    """Seconds this thread has waited for a CPU since it started (0 where the kernel does not say)."""
    try:
        return int(SCHEDSTAT.read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


async def key_latency(app: App) -> tuple[float, float]:
    """Send one printable key as the terminal driver would; (app latency, wall latency) until the prompt
    holds it."""
    prompt = app.query_one("#prompt")
    before = len(prompt.text)
    start, waited = time.monotonic(), run_queue_wait()
    app.post_message(events.Key("x", "x"))
    while len(prompt.text) == before:
        await asyncio.sleep(0.001)
        if time.monotonic() - start > 5:
            break
    wall = time.monotonic() - start
    return wall - (run_queue_wait() - waited), wall


CALC = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"
TEST_CALC = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"


def call(name: str, call_id: str, **arguments: Any) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def step(reasoning: str, *calls: dict[str, Any], content: str = "", **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "reasoning_content": reasoning, "content": content}
    if calls:
        message["tool_calls"] = list(calls)
    return {**message, **extra}


def fix_script(delay: float = 0.0) -> list[dict[str, Any]]:
    """Read calc.py, fix add() with an edit, finish."""
    return [
        step(
            "The test calls add(2, 3) and expects 5. Before changing anything I should read calc.py "
            "to see what add does, and check whether mul has the same problem.",
            call("read_file", "c1", path="calc.py"),
            delay=delay,
        ),
        step(
            "add subtracts instead of adding; change the operator.",
            call("edit_file", "c2", path="calc.py", old_string="return a - b", new_string="return a + b"),
        ),
        step("The fix is in place.", call("finish", "c3", summary="Fixed `add`: it subtracted.")),
    ]


def write_script(path: Path, messages: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(m, ensure_ascii=False) + "\n" for m in messages), encoding="utf-8")
    return path


def settings_for(script: Path, approval: str = "ask", **ui: Any) -> Settings:
    return Settings(model={"backend": "scripted", "path": str(script)}, agent={"approval": approval}, ui=ui)


def commit_project(repo: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (repo / name).write_text(text, encoding="utf-8")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, capture_output=True)
    subprocess.run(["git", "commit", "-qm", "project"], cwd=repo, check=True, capture_output=True)
    return repo


async def wait_until(pilot: Pilot, predicate: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    """Let the app run until `predicate()` is truthy; fail with the screen when it never is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {what or predicate}; screen:\n{screen_text(pilot.app)}")


async def type_and_send(pilot: Pilot, text: str) -> None:
    pilot.app.query_one("#prompt").insert(text)
    await pilot.press("enter")


def screen_text(app: App) -> str:
    """The screen as plain text, as a terminal of the app's size would show it."""
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        record=True,
        color_system="truecolor",
        legacy_windows=False,
        safe_box=False,
    )
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text(styles=False)
