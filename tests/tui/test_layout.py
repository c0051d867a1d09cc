"""Usable at 80x24 and in a light theme: everything needed to act is on screen."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

import pytest
from dsagent.tui import messages as ui
from dsagent.tui.app import DsagentApp
from dsagent.tui.approval import ApprovalScreen
from textual.widgets import Button, Input
from tui_kit import screen_text, settings_for, wait_until

pytestmark = pytest.mark.anyio

LONG_DIFF = "--- a/x.py\n+++ b/x.py\n@@ -1,40 +1,40 @@\n" + "".join(f"-old {i}\n+new {i}\n" for i in range(40))


async def test_a_long_approval_keeps_its_buttons_on_an_80x24_screen(tmp_path: Path) -> None:
    app = DsagentApp(settings_for(Path("s.jsonl")), tmp_path, sandbox=False)
    async with app.run_test(size=(80, 24)) as pilot:
        request = ui.ApprovalRequest("edit_file", {"path": "x.py"}, diff=LONG_DIFF, reason="edit_file edits")
        future: Future[ui.ApprovalDecision] = Future()
        app.post_message(ui.ApprovalRequested(request, future))
        await pilot.pause(0.2)
        assert isinstance(app.screen, ApprovalScreen)
        for widget in [*app.screen.query(Button), app.screen.query_one(Input)]:
            region = widget.region
            assert region.y >= 0 and region.bottom <= 24 and region.right <= 80, (widget, region)
        await pilot.press("n")
        assert future.result(timeout=1) == ui.ApprovalDecision("deny", "")


async def test_footer_and_status_fit_80_columns(tmp_path: Path) -> None:
    app = DsagentApp(settings_for(Path("session.jsonl")), tmp_path, sandbox=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        lines = screen_text(app).splitlines()
        footer, status = lines[23], lines[22]
        for label in ("Quit", "Cancel step", "Diff", "Sessions", "Theme"):
            assert label in footer, footer
        assert "idle" in status and "scripted:session.jsonl" in status and "sbx off" in status


async def test_theme_from_settings_toggle_and_unknown(tmp_path: Path) -> None:
    app = DsagentApp(settings_for(Path("s.jsonl"), theme="textual-light"), tmp_path, sandbox=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.theme == "textual-light" and not app.current_theme.dark
        await pilot.press("ctrl+t")
        assert app.current_theme.dark
    app = DsagentApp(settings_for(Path("s.jsonl"), theme="no-such-theme"), tmp_path, sandbox=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.theme == "textual-dark"
        assert any("unknown theme 'no-such-theme'" in str(n.message) for n in app._notifications)


async def test_the_view_follows_the_stream_until_the_user_scrolls_up(tmp_path: Path) -> None:
    app = DsagentApp(settings_for(Path("s.jsonl")), tmp_path, sandbox=False)
    async with app.run_test(size=(80, 24)) as pilot:
        chat = app.conversation
        app.post_message(ui.TurnStarted("write a lot"))
        app.post_message(ui.StepStarted(1))
        for line in range(60):
            app.post_message(ui.AnswerDelta(f"line {line}\n\n"))
        # Pinned: once the text is drawn (two rows a line), the view shows its end.
        await wait_until(pilot, lambda: chat.max_scroll_y > 100 and chat.scroll_y == chat.max_scroll_y)
        chat.focus()
        await pilot.press("home")  # the user scrolls up to read
        assert chat.scroll_y == 0
        height = chat.max_scroll_y
        for line in range(60, 80):
            app.post_message(ui.AnswerDelta(f"line {line}\n\n"))
        await wait_until(pilot, lambda: chat.max_scroll_y > height + 30, what="more text drawn")
        assert chat.scroll_y == 0  # reading older text: the stream does not pull the view away


async def test_no_saved_sessions_says_so(tmp_path: Path) -> None:
    app = DsagentApp(settings_for(Path("s.jsonl")), tmp_path, sandbox=False)
    async with app.run_test(size=(80, 24)) as pilot:
        app.query_one("#prompt").insert("/sessions")
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert "No saved sessions" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        assert not app.screen.is_modal
