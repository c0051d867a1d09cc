"""Screenshots of the app at 80x24 (the smallest terminal it supports) compared with the accepted ones in
__snapshots__/. The app is driven by UI messages with fixed numbers, so every run draws the same screen.
Update after a deliberate change with `pytest tests/tui/test_snapshots.py --snapshot-update`."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

from dsagent.tui import messages as ui
from dsagent.tui.app import DsagentApp
from dsagent.tui.reasoning import ReasoningBlock
from textual.pilot import Pilot
from tui_kit import settings_for, wait_until

DIFF = (
    "--- a/calc.py\n+++ b/calc.py\n@@ -1,5 +1,5 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"
    " \n \n def mul(a, b):\n"
)
REASONING = "The test calls `add(2, 3)` and expects 5. I should read calc.py before changing anything, "


def make_app(tmp_path: Path, theme: str = "textual-dark") -> DsagentApp:
    return DsagentApp(settings_for(Path("session.jsonl"), theme=theme), tmp_path, sandbox=False)


async def steady(pilot: Pilot) -> None:
    pilot.app.query_one("#prompt").cursor_blink = False  # a blinking cursor would make screenshots differ
    await pilot.pause()


def post(app: DsagentApp, *messages: object) -> None:
    for message in messages:
        app.post_message(message)


async def run_streaming(pilot: Pilot) -> None:
    app = pilot.app
    app.set_busy(True, "thinking")
    post(app, ui.TurnStarted("make test_add pass"), ui.StepStarted(1))
    post(app, *(ui.ReasoningDelta(word + " ") for word in REASONING.split()))
    post(app, ui.UsageUpdated(ui.Usage(context_used=2048, prefilled=96, reused=1952, tokens_per_s=21.5, step=1)))
    await wait_until(pilot, lambda: app.query(ReasoningBlock) and app.query_one(ReasoningBlock).text.endswith(", "))
    await wait_until(pilot, lambda: app.query_one(ReasoningBlock).caught_up)
    await steady(pilot)
    await pilot.pause(0.3)


async def run_tool_card(pilot: Pilot) -> None:
    app = pilot.app
    post(app, ui.TurnStarted("make test_add pass"), ui.StepStarted(2), ui.ReasoningDelta("Fix the operator."))
    post(app, ui.StepEnded(2), ui.ToolStarted("c2", "edit_file", {"path": "calc.py", "old_string": "-"}))
    post(app, ui.ToolFinished("c2", "edit_file", True, "Edited calc.py", 0.02, data={"diff": DIFF}))
    await steady(pilot)
    await pilot.pause(0.3)


async def run_approval(pilot: Pilot) -> None:
    request = ui.ApprovalRequest(
        "run_shell",
        {"command": "rm -rf build && python -m build"},
        command="rm -rf build && python -m build",
        reason="run_shell runs a command",
    )
    pilot.app.set_busy(True, "approval needed")
    post(pilot.app, ui.ApprovalRequested(request, Future()))
    await steady(pilot)
    await pilot.pause(0.3)


async def run_error(pilot: Pilot) -> None:
    app = pilot.app
    app.set_busy(True, "starting")
    post(app, ui.TurnStarted("hello"))
    post(app, ui.AgentFailed("the model server at http://127.0.0.1:8000 did not answer; start it or use /model"))
    post(app, ui.TurnEnded("error"))
    await steady(pilot)
    await pilot.pause(0.3)


def test_idle(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path), run_before=steady)


def test_streaming_with_reasoning(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path), run_before=run_streaming)


def test_tool_card_with_diff(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path), run_before=run_tool_card)


def test_approval_modal(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path), run_before=run_approval)


def test_error(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path), run_before=run_error)


def test_light_theme_tool_card(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path, theme="textual-light"), run_before=run_tool_card)


def test_light_theme_approval(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path, theme="textual-light"), run_before=run_approval)
